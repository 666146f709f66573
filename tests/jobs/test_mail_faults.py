"""Field faults in job mail (issue 12, items 1, 2 and 6), each fixed by kind
and pinned on the bytes the real SMTP server received, parsed with Python's
``email`` package:

1. no line over 998 octets in any part, whatever the values (RFC 5322 2.1.1);
2. address headers written as Django writes them for single mail: display name
   encoded and folded, ``<addr-spec>`` intact, IDN domains in punycode, and
   every domain the app writes into headers in punycode;
3. no reader ever receives a placeholder or a piece of one: templates that
   filter or test per-recipient values are refused, naming template and line,
   and ``create_job`` refuses content holding a damaged placeholder.
"""

from __future__ import annotations

import email
import email.policy
import random
import re
from email.header import decode_header, make_header
from email.headerregistry import AddressHeader, HeaderRegistry
from email.utils import parseaddr

import pytest
from django.contrib.auth.models import User
from django.contrib.messages import get_messages

from mailer.exceptions import InvalidEmail, TemplateProblem
from mailer.jobs.actions import EmailUpdate
from mailer.jobs.compose import ADDRESS_HEADERS, JobTemplate, normalize_newlines
from mailer.jobs.expand import expand_pending_jobs
from mailer.jobs.personalize import Personalizer
from mailer.jobs.services import RenderedEmail, create_job
from mailer.models import Message, MessageJob
from mailer.sending.engine import send_queued
from tests.conftest import by_recipient
from tests.jobs.helpers import render_story
from tests.testapp.admin import StoryAdmin
from tests.testapp.models import Reader, Story

pytestmark = pytest.mark.django_db

READER = "reader@example.com"


def deliver(mailserver, *, body_text, body_html="", recipients=(READER,), **job):
    """Queue one job, expand it, send it to the test server; return what
    arrived, oldest first."""
    content = RenderedEmail(
        subject=job.pop("subject", "Morning headlines"),
        body_text=body_text,
        body_html=body_html,
        headers=job.pop("headers", {}),
    )
    job.setdefault("from_email", "The Daily <news@example.com>")
    create_job(content=content, recipients=list(recipients), **job)
    expand_pending_jobs()
    result = send_queued()
    assert result.sent == len(recipients), result.summary()
    return mailserver.messages


def longest_line(data: bytes) -> int:
    return max(len(line) for line in data.split(b"\r\n"))


def parse(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)


def body(message, subtype: str) -> str:
    return message.get_body((subtype,)).get_content().replace("\r\n", "\n")


# -- 1. lines over 998 octets -------------------------------------------------


def test_four_repeats_of_a_250_character_name_go_quoted_printable(mailserver):
    name = "N" * 250  # 4 x 250 + 3 spaces = 1,003 octets on one line
    [received] = deliver(
        mailserver,
        body_text="[[mj:name]] [[mj:name]] [[mj:name]] [[mj:name]]\n",
        subject="[[mj:name]] [[mj:name]] [[mj:name]] [[mj:name]]",
        recipients=[{"email": READER, "name": name}],
    )

    assert longest_line(received.data) <= 998
    message = parse(received.data)
    assert message["Content-Transfer-Encoding"] == "quoted-printable"
    assert body(message, "plain") == " ".join([name] * 4) + "\n"
    assert message["Subject"] == " ".join([name] * 4)


def test_html_escaping_that_grows_a_value_past_998_octets_goes_quoted_printable(
    mailserver,
):
    quotes = '"' * 167  # 167 x "&quot;" = 1,002 octets
    [received] = deliver(
        mailserver,
        body_text="Hi [[mj:name]]\n",
        body_html="[[mj:name]]\n",
        recipients=[{"email": READER, "name": quotes}],
    )

    assert longest_line(received.data) <= 998
    message = parse(received.data)
    html = message.get_body(("html",))
    assert html["Content-Transfer-Encoding"] == "quoted-printable"
    assert body(message, "html") == "&quot;" * 167 + "\n"
    # The text part's line is 170 octets: it keeps 7bit.
    assert message.get_body(("plain",))["Content-Transfer-Encoding"] == "7bit"
    assert body(message, "plain") == f"Hi {quotes}\n"


def test_two_290_character_values_on_a_500_character_line(mailserver):
    line = "a" * 250 + "[[mj:first]]" + "b" * 238 + "[[mj:last]]\n"
    first, last = "F" * 290, "é" * 290  # 250 + 290 + 238 + 580 octets
    [received] = deliver(
        mailserver,
        body_text=line,
        body_html=f"<p>{line.rstrip()}</p>",
        recipients=[{"email": READER, "first": first, "last": last}],
    )

    assert longest_line(received.data) <= 998
    message = parse(received.data)
    expected = "a" * 250 + first + "b" * 238 + last + "\n"
    assert body(message, "plain") == expected
    assert body(message, "html") == f"<p>{expected.rstrip()}</p>\n"
    for part in ("plain", "html"):
        cte = message.get_body((part,))["Content-Transfer-Encoding"]
        assert cte == "quoted-printable"


def test_short_values_keep_the_7bit_and_8bit_fast_path(mailserver):
    received = deliver(
        mailserver,
        body_text="[[mj:name]] [[mj:name]] [[mj:name]] [[mj:name]]\n",
        body_html="<p>[[mj:name]]</p>\n",
        recipients=[
            {"email": "ann@example.com", "name": "Ann"},
            {"email": "zoe@example.com", "name": "Zoë"},
        ],
    )

    by_reader = {a: parse(r.data) for a, r in by_recipient(received).items()}
    plain = by_reader["ann@example.com"].get_body(("plain",))
    assert plain["Content-Transfer-Encoding"] == "7bit"
    plain = by_reader["zoe@example.com"].get_body(("plain",))
    assert plain["Content-Transfer-Encoding"] == "8bit"
    assert body(by_reader["zoe@example.com"], "plain") == "Zoë Zoë Zoë Zoë\n"


ALPHABET = ["a", "Z", " ", '"', "&", "<", "'", "é", "✓", "😀", "."]


def random_text(rng: random.Random, size: int) -> str:
    text = "".join(rng.choice(ALPHABET) for _ in range(size))
    if text and rng.random() < 0.1:  # now and then a line break (an address)
        cut = rng.randrange(len(text))
        text = text[:cut] + rng.choice(["\n", "\r\n", "\r"]) + text[cut:]
    return text


def random_line(rng: random.Random) -> str:
    pieces = []
    for _ in range(rng.randint(0, 5)):
        pieces.append("x" * rng.choice([0, 1, 40, 200, 400]))
        pieces.append(f"[[mj:{rng.choice(['name', 'city', 'note'])}]]")
    pieces.append("y" * rng.choice([0, 3, 300, 990]))
    return "".join(pieces)


def test_no_line_passes_998_octets_whatever_the_values_and_text_decodes_back():
    """Property test over random templates and values (seeded, bounded): any
    mix of repeats, long values, non-ASCII and HTML escaping."""
    rng = random.Random(20261201)
    encodings = set()
    for _ in range(300):
        text = "\n".join(random_line(rng) for _ in range(rng.randint(1, 4)))
        html = "<p>" + "\n".join(random_line(rng) for _ in range(2)) + "</p>"
        values = {
            field: random_text(rng, rng.choice([0, 5, 80, 170, 250, 290]))
            for field in ("name", "city", "note")
        }
        template = JobTemplate(
            subject="News",
            from_email="news@example.com",
            body_text=text,
            body_html=html,
        )
        data, _ = template.render(READER, values)

        assert longest_line(data) <= 998
        message = parse(data)
        crlf = {k: normalize_newlines(v) for k, v in values.items()}
        for subtype, source, escape in (("plain", text, False), ("html", html, True)):
            expected = Personalizer(source.replace("\n", "\r\n"), escape=escape)
            wanted = expected.render(crlf).replace("\r\n", "\n").rstrip("\n")
            assert body(message, subtype).rstrip("\n") == wanted
            encodings.add(message.get_body((subtype,))["Content-Transfer-Encoding"])
    # The loop exercised both ways out.
    assert {"quoted-printable", "7bit"} <= encodings or {
        "quoted-printable",
        "8bit",
    } <= encodings


# -- 2. address headers and domains -------------------------------------------


def address_policy(*names: str) -> email.policy.EmailPolicy:
    """The default policy, reading ``names`` as address headers too (the
    standard registry knows To, From, Cc, Reply-To, Sender and Resent-*)."""
    registry = HeaderRegistry()
    for name in names:
        registry.map_to_type(name.lower(), AddressHeader)
    return email.policy.default.clone(header_factory=registry)


def rfc2047_mailbox(raw: str) -> tuple[str, str]:
    """(display name, addr-spec) decoded by RFC 2047's rules, where adjacent
    encoded words join without the white space between them (section 6.2).
    The stdlib's newer header parser puts a space between them inside a
    display name, so long names are compared this way."""
    raw = " ".join(raw.split())
    if "=?" not in raw:
        return parseaddr(raw)
    phrase, _, addr = raw.rpartition(" <")
    return str(make_header(decode_header(phrase))), addr.rstrip(">")


@pytest.mark.parametrize(
    "name", sorted(h.title() for h in ADDRESS_HEADERS if not h.endswith("bcc"))
)
def test_every_address_header_keeps_its_address(mailserver, name):
    if name == "From":
        job = {"from_email": "Zoë Doe <zoe@bücher.example>"}
    elif name == "To":
        job = {"recipients": [{"email": "zoe@bücher.example", "name": "Zoë Doe"}]}
    else:
        job = {"headers": {name: "Zoë Doe <zoe@bücher.example>, desk@bücher.example"}}
    [received] = deliver(mailserver, body_text="Hi\n", **job)

    assert longest_line(received.data) <= 998
    message = email.message_from_bytes(received.data, policy=address_policy(name))
    addresses = message[name].addresses
    assert (addresses[0].display_name, addresses[0].addr_spec) == (
        "Zoë Doe",
        "zoe@xn--bcher-kva.example",
    )
    if name not in ("From", "To"):
        assert addresses[1].addr_spec == "desk@xn--bcher-kva.example"
    assert received.data.split(b"\r\n\r\n", 1)[0].isascii()


def test_djangos_address_headers_are_all_written_as_addresses():
    from django.core.mail import message

    assert set(message.ADDRESS_HEADERS) <= ADDRESS_HEADERS


@pytest.mark.parametrize(
    "name", ["é" * 326, "x" * 882, "Ann " * 300, 'Tom & "Jerry" <x>, ' * 40]
)
def test_a_readers_long_name_never_hides_their_address(mailserver, name):
    [received] = deliver(
        mailserver,
        body_text="Hi [[mj:name]]\n",
        recipients=[{"email": "ann@bücher.example", "name": name}],
    )

    assert longest_line(received.data) <= 998
    message = parse(received.data)
    assert message["To"].addresses[0].addr_spec == "ann@xn--bcher-kva.example"
    raw = email.message_from_bytes(received.data)["To"]
    assert rfc2047_mailbox(raw) == (name.strip(), "ann@xn--bcher-kva.example")


def test_a_senders_long_non_ascii_name_keeps_the_address(mailserver):
    sender = "é" * 325
    [received] = deliver(
        mailserver, body_text="Hi\n", from_email=f"{sender} <news@example.com>"
    )

    assert longest_line(received.data) <= 998
    message = parse(received.data)
    assert message["From"].addresses[0].addr_spec == "news@example.com"
    raw = email.message_from_bytes(received.data)["From"]
    assert rfc2047_mailbox(raw) == (sender, "news@example.com")
    assert received.mail_from == "news@example.com"


def test_a_short_reply_to_name_round_trips_exactly(mailserver):
    [received] = deliver(
        mailserver,
        body_text="Hi\n",
        headers={"Reply-To": "Zoë Doe <zoe@example.org>"},
    )
    [reply_to] = parse(received.data)["Reply-To"].addresses
    assert (reply_to.display_name, reply_to.addr_spec) == (
        "Zoë Doe",
        "zoe@example.org",
    )


def test_domains_the_app_writes_into_headers_are_punycode(mailserver, settings):
    settings.MAILER_SITE_URL = "https://bücher.example"
    settings.MAILER_UNSUBSCRIBE_MAILTO = "Leave <leave@bücher.example>"
    [received] = deliver(mailserver, body_text="Bye: [[mj:unsubscribe_url]]\n")

    headers = received.data.split(b"\r\n\r\n", 1)[0]
    assert headers.isascii()
    assert longest_line(received.data) <= 998
    message = parse(received.data)
    assert message["Message-ID"].endswith("@xn--bcher-kva.example>")
    assert message["List-Id"] is None or "xn--bcher-kva.example" in message["List-Id"]
    unsubscribe = str(message["List-Unsubscribe"])
    assert "<https://xn--bcher-kva.example/mail/unsubscribe/" in unsubscribe
    assert "<mailto:leave@xn--bcher-kva.example?subject=unsubscribe>" in unsubscribe
    assert "https://xn--bcher-kva.example/mail/unsubscribe/" in body(message, "plain")


def test_the_list_id_domain_is_punycode(mailserver, settings):
    settings.MAILER_LIST_ID_DOMAIN = "bücher.example"
    [received] = deliver(mailserver, body_text="Hi\n", list_id="daily")

    message = parse(received.data)
    assert message["List-Id"] == "<daily.xn--bcher-kva.example>"
    assert message["Message-ID"].endswith("@xn--bcher-kva.example>")


@pytest.mark.parametrize(
    "headers, words",
    [
        ({"Bcc": "boss@example.com"}, "cannot carry a Bcc header"),
        ({"Reply-To": "not an address"}, "Invalid address"),
        ({"Cc": "ann@bücher..example"}, "Invalid address"),
        ({"Reply-To": "Zoë <zoe@example.org>\r\nBcc: x@example.com"}, "line break"),
    ],
)
def test_bad_address_headers_are_refused_when_the_job_is_created(headers, words):
    content = RenderedEmail(subject="Hi", body_text="Hi\n", headers=headers)
    with pytest.raises(InvalidEmail, match=words):
        create_job(content=content, recipients=[READER])
    assert not MessageJob.objects.exists()


# -- 3. per-recipient values used other than as they are ----------------------


@pytest.mark.parametrize(
    "templates, words",
    [
        (
            {"text_template": "testapp/faults/name_upper.txt"},
            "The text template 'testapp/faults/name_upper.txt' uses a per-recipient "
            "value in a way that cannot be personalised, line 1: "
            "{{ recipient.name|upper }}.",
        ),
        (
            {
                "text_template": "testapp/faults/plain.txt",
                "html_template": "testapp/faults/name_truncated.html",
            },
            "The HTML template 'testapp/faults/name_truncated.html' uses a "
            "per-recipient value in a way that cannot be personalised, line 2: "
            "{{ recipient.name|truncatechars:6 }}.",
        ),
        (
            {"text_template": "testapp/faults/name_if.txt"},
            "'testapp/faults/name_if.txt' uses a per-recipient value in a way that "
            "cannot be personalised, line 1: {% if recipient.name %}.",
        ),
        (
            {"text_template": "testapp/faults/outer.txt"},
            "The text template 'testapp/faults/name_upper.txt' uses a per-recipient "
            "value in a way that cannot be personalised, line 1: "
            "{{ recipient.name|upper }}.",
        ),
    ],
    ids=["upper", "truncated-html", "if", "included"],
)
def test_a_filter_or_tag_on_a_recipient_value_is_refused_naming_the_line(
    templates, words
):
    with pytest.raises(TemplateProblem) as refused:
        render_story(**templates)
    assert words in str(refused.value)
    assert "inserted as they are, e.g. {{ recipient.name }}" in str(refused.value)


def test_values_inserted_as_they_are_reach_each_reader_without_placeholders(
    mailserver,
):
    content = render_story("testapp/faults/plain.txt", "testapp/faults/plain.html")
    create_job(
        content=content,
        recipients=[
            {"email": "ann@example.com", "name": "ann"},
            {"email": "zoe@example.com", "name": "Zoë & <Co>"},
        ],
    )
    expand_pending_jobs()
    send_queued()

    by_reader = {a: parse(r.data) for a, r in by_recipient(mailserver.messages).items()}
    zoe = by_reader["zoe@example.com"]
    assert body(zoe, "plain").startswith("Good morning Zoë & <Co>,\n")
    assert "<p>Good morning Zoë &amp; &lt;Co&gt;,</p>" in body(zoe, "html")
    assert body(by_reader["ann@example.com"], "plain").startswith("Good morning ann,")
    for message in by_reader.values():
        for subtype in ("plain", "html"):
            assert not re.search(r"(?i)mj:|\[\[", body(message, subtype))


@pytest.mark.parametrize(
    "damaged",
    [
        "Good morning [[MJ:NAME]],",
        "Good morning [[Mj:Name]],",
        "Read on: https://x.example/?to=%5B%5Bmj%3Aemail%5D%5D",
        "Hi [[mj:na…",
        "Hi mj:name]]",
        "&#91;&#91;mj:name&#93;&#93;",
        "var n = '\\u005B\\u005Bmj:name\\u005D\\u005D';",
    ],
)
def test_create_job_refuses_a_damaged_placeholder_naming_part_and_line(damaged):
    content = RenderedEmail(
        subject="Morning", body_text="Hello [[mj:name]]\n\n" + damaged + "\n"
    )
    with pytest.raises(InvalidEmail) as refused:
        create_job(content=content, recipients=[READER])
    assert str(refused.value).startswith(
        f"The text body holds a damaged per-recipient placeholder, line 3: {damaged}."
    )
    assert not MessageJob.objects.exists()
    assert not Message.all_objects.exists()


def test_a_damaged_placeholder_in_the_subject_or_html_is_refused_too():
    with pytest.raises(InvalidEmail, match="The subject holds a damaged"):
        create_job(
            content=RenderedEmail(subject="For [[MJ:NAME]]", body_text="Hi\n"),
            recipients=[READER],
        )
    with pytest.raises(InvalidEmail, match="The HTML body holds a damaged .* line 2"):
        create_job(
            content=RenderedEmail(
                subject="Hi", body_text="Hi\n", body_html="<p>\n[[MJ:NAME]]</p>"
            ),
            recipients=[READER],
        )


def test_the_admin_action_shows_the_refusal_and_queues_nothing(client, monkeypatch, db):
    editor = User.objects.create_superuser("editor", "editor@example.com", "pw")
    client.force_login(editor)
    Reader.objects.create(email="ann@example.com", name="Ann")
    story = Story.objects.create(headline="Bridge reopens")
    monkeypatch.setattr(
        StoryAdmin,
        "email_update",
        EmailUpdate(
            subject="Morning",
            text_template="testapp/faults/name_upper.txt",
            recipients=lambda story: Reader.objects.values("email", "name"),
        ),
    )

    for extra in ({}, {"post": "yes"}):
        response = client.post(
            "/admin/testapp/story/",
            {
                "action": "send_email_update",
                "_selected_action": [story.pk],
                **extra,
            },
        )
        shown = [str(m) for m in get_messages(response.wsgi_request)]
        assert shown[-1].startswith(
            "Nothing was queued. The text template 'testapp/faults/name_upper.txt' "
            "uses a per-recipient value in a way that cannot be personalised, "
            "line 1: {{ recipient.name|upper }}."
        )
    assert not MessageJob.objects.exists()


def test_a_sender_longer_than_a_line_is_refused_clearly():
    content = RenderedEmail(subject="Hi", body_text="Hi\n")
    with pytest.raises(InvalidEmail, match="The sender is 1,019 characters, over 998"):
        create_job(
            content=content,
            recipients=[READER],
            from_email="é" * 1000 + " <news@example.com>",
        )
    assert not MessageJob.objects.exists()


def test_a_tag_that_renames_a_recipient_value_is_refused_too():
    with pytest.raises(
        TemplateProblem, match=r"line 1: \{% with who=recipient.name %\}"
    ):
        render_story("testapp/faults/with.txt")


def test_a_template_that_renders_differently_each_time_is_not_refused():
    """``{% now %}`` to the microsecond makes every render differ; only the
    damaged-placeholder check can judge such a template, and it finds nothing
    wrong here."""
    content = render_story("testapp/faults/clock.txt")
    assert content.body_text.startswith("Good morning [[mj:name]],\nRendered at ")


def test_any_readers_name_round_trips_in_to_with_every_line_within_limits():
    """Seeded, bounded: names of any length and script, with specials."""
    rng = random.Random(1201)
    template = JobTemplate(
        subject="News", from_email="news@example.com", body_text="Hi"
    )
    alphabet = ["a", "Z", " ", '"', ",", "<", "@", "\\", "é", "✓", "😀", "ß", "\t"]
    for _ in range(100):
        name = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 1000)))
        data, _ = template.render("ann@xn--bcher-kva.example", {"name": name})

        headers = data.split(b"\r\n\r\n", 1)[0]
        assert headers.isascii()
        assert longest_line(headers) <= 998
        to = email.message_from_bytes(data)["To"]
        assert parse(data)["To"].addresses[0].addr_spec == "ann@xn--bcher-kva.example"
        assert rfc2047_mailbox(to) == (
            " ".join(name.split()),
            "ann@xn--bcher-kva.example",
        )


def test_a_list_id_that_cannot_be_a_list_label_is_refused():
    content = RenderedEmail(subject="Hi", body_text="Hi\n")
    with pytest.raises(InvalidEmail, match="The list id 'küche news' must be ASCII"):
        create_job(content=content, recipients=[READER], list_id="küche news")
    assert not MessageJob.objects.exists()
