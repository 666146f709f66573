"""Job mail built per recipient from bytes prepared once (``mailer.compose``):
each reader's message must read back exactly as if Django's own
``EmailMultiAlternatives`` had built it for that reader."""

from __future__ import annotations

import email
import email.policy
import re
from email.utils import formataddr

import pytest
from django.core.mail import EmailMultiAlternatives

from mailer.exceptions import HeaderInjection
from mailer.jobs.compose import JobTemplate
from mailer.jobs.personalize import Personalizer
from mailer.sending.smtp import serialize

TRICKY = 'Tom & "Jerry" <x>'


def parse(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)


def text(part) -> str:
    return part.get_content().replace("\r\n", "\n").rstrip("\n") + "\n"


def header_section(data: bytes) -> bytes:
    return data.split(b"\r\n\r\n", 1)[0]


def newsletter(**overrides) -> JobTemplate:
    fields = {
        "subject": "The Daily for [[mj:name]]",
        "from_email": "The Daily <news@example.com>",
        "body_text": (
            "Dear [[mj:name]],\n\nToday's news.\n\n"
            "Unsubscribe: [[mj:unsubscribe_url]]\n"
        ),
        "body_html": "<p>Dear [[mj:name]],</p>\n<p>Today's news.</p>\n",
        "headers": {"List-Id": "<issue.news.example.com>"},
        "message_id_domain": "news.example.com",
    }
    return JobTemplate(**{**fields, **overrides})


def test_two_recipients_get_their_own_correctly_escaped_bodies():
    template = newsletter()
    tom, _ = template.render(
        "tom@example.com", {"name": TRICKY, "unsubscribe_url": "https://u/1"}
    )
    ann, _ = template.render(
        "ann@example.com", {"name": "Ann", "unsubscribe_url": "https://u/2"}
    )

    tom_parsed, ann_parsed = parse(tom), parse(ann)
    assert text(tom_parsed.get_body(("plain",))) == (
        'Dear Tom & "Jerry" <x>,\n\nToday\'s news.\n\nUnsubscribe: https://u/1\n'
    )
    assert text(tom_parsed.get_body(("html",))) == (
        "<p>Dear Tom &amp; &quot;Jerry&quot; &lt;x&gt;,</p>\n<p>Today's news.</p>\n"
    )
    assert text(ann_parsed.get_body(("plain",))) == (
        "Dear Ann,\n\nToday's news.\n\nUnsubscribe: https://u/2\n"
    )
    assert text(ann_parsed.get_body(("html",))) == (
        "<p>Dear Ann,</p>\n<p>Today's news.</p>\n"
    )
    assert tom_parsed["Subject"] == 'The Daily for Tom & "Jerry" <x>'
    assert [(a.display_name, a.addr_spec) for a in tom_parsed["To"].addresses] == [
        (TRICKY, "tom@example.com")
    ]
    assert [(a.display_name, a.addr_spec) for a in ann_parsed["To"].addresses] == [
        ("Ann", "ann@example.com")
    ]


@pytest.mark.parametrize(
    "name, body_text, body_html",
    [
        ("Ann", "Hello [[mj:name]]\nBye\n", "<p>Hello [[mj:name]]</p>"),
        (TRICKY, "Hi [[mj:name]]", "<p>Hi [[mj:name]]</p>"),
        ("Zoë “Z” Ånström", "Héllo [[mj:name]] ✓\n", "<p>Grüße ✓ [[mj:name]]</p>"),
        ("Long", "x" * 2500 + "\nend [[mj:name]]\n", "<p>" + "y" * 3000 + "</p>"),
        ("Dots", ".\n..\n.leading dot [[mj:name]]\nFrom the start\n", "<p>.</p>"),
        ("Text only", "Just text for [[mj:name]]\n", ""),
        ("Trailing", "no final newline [[mj:name]]", "<p>no final newline</p>"),
    ],
    ids=["plain", "tricky", "unicode", "long-lines", "dots", "text-only", "no-eol"],
)
def test_a_job_message_parses_back_like_djangos_own(name, body_text, body_html):
    template = newsletter(body_text=body_text, body_html=body_html)
    ours = parse(template.render("reader@example.com", {"name": name})[0])

    values = {"name": name}
    theirs_message = EmailMultiAlternatives(
        subject=f"The Daily for {name}",
        body=Personalizer(body_text).render(values),
        from_email="The Daily <news@example.com>",
        to=[formataddr((name, "reader@example.com"))],
        headers={"List-Id": "<issue.news.example.com>"},
    )
    if body_html:
        theirs_message.attach_alternative(
            Personalizer(body_html, escape=True).render(values), "text/html"
        )
    theirs = parse(serialize(theirs_message)[0])

    for header in ("Subject", "From", "List-Id", "MIME-Version"):
        assert str(ours[header]) == str(theirs[header]), header
    assert ours["To"].addresses == theirs["To"].addresses
    assert ours.get_content_type() == theirs.get_content_type()
    assert text(ours.get_body(("plain",))) == text(theirs.get_body(("plain",)))
    if body_html:
        assert text(ours.get_body(("html",))) == text(theirs.get_body(("html",)))
    else:
        assert ours.get_body(("html",)) is None


def test_long_lines_go_quoted_printable_and_decode_back_exactly():
    long_text = "word " * 400 + "end"  # 2,003 characters on one line
    long_html = "<p>" + "ä" * 1200 + "</p>"  # 2,400 octets in UTF-8
    template = newsletter(body_text=long_text + "\n", body_html=long_html + "\n")

    data, _ = template.render("reader@example.com", {"name": "Ann"})

    # Quoted-printable lines are at most 76 characters (RFC 2045).
    body = data.split(b"\r\n\r\n", 1)[1]
    assert max(len(line) for line in body.split(b"\r\n")) <= 76
    parsed = parse(data)
    plain, html = parsed.get_body(("plain",)), parsed.get_body(("html",))
    assert plain["Content-Transfer-Encoding"] == "quoted-printable"
    assert html["Content-Transfer-Encoding"] == "quoted-printable"
    assert plain.get_content().replace("\r\n", "\n") == long_text + "\n"
    assert html.get_content().replace("\r\n", "\n") == long_html + "\n"


def test_a_long_value_in_a_short_line_switches_that_message_to_quoted_printable():
    template = newsletter(body_text="Hi [[mj:name]]\n", body_html="<p>[[mj:name]]</p>")

    short = parse(template.render("a@example.com", {"name": "Ann"})[0])
    long_name = "N" * 1500
    data, _ = template.render("b@example.com", {"name": long_name})
    long = parse(data)

    assert short.get_body(("plain",))["Content-Transfer-Encoding"] == "7bit"
    assert long.get_body(("plain",))["Content-Transfer-Encoding"] == "quoted-printable"
    assert text(long.get_body(("plain",))) == f"Hi {long_name}\n"
    assert text(long.get_body(("html",))) == f"<p>{long_name}</p>\n"
    body_lines = data.split(b"\r\n\r\n", 1)[1].split(b"\r\n")
    assert max(len(line) for line in body_lines) <= 998


def test_non_ascii_subject_and_names_are_encoded_words_that_decode_back():
    template = newsletter(
        subject="Grüße, [[mj:name]] ✓", from_email="Köln Täglich <news@example.com>"
    )
    data, _ = template.render("zoe@example.com", {"name": "Zoë Ånström"})

    headers = header_section(data)
    assert headers.isascii()
    assert re.search(rb"^Subject: =\?utf-8\?", headers, re.MULTILINE)
    parsed = parse(data)
    assert parsed["Subject"] == "Grüße, Zoë Ånström ✓"
    assert parsed["From"].addresses[0].display_name == "Köln Täglich"
    assert parsed["To"].addresses[0].display_name == "Zoë Ånström"
    assert text(parsed.get_body(("plain",))).startswith("Dear Zoë Ånström,\n")
    assert parsed.get_body(("plain",))["Content-Transfer-Encoding"] == "8bit"


def test_an_idn_sender_domain_is_punycode_in_the_header_and_envelope():
    template = newsletter(from_email="Bücher <news@bücher.example>")
    data, _ = template.render("ann@example.com", {"name": "Ann"})
    assert template.envelope_from == "news@xn--bcher-kva.example"
    assert parse(data)["From"].addresses[0].addr_spec == "news@xn--bcher-kva.example"
    assert header_section(data).isascii()


def test_every_line_ends_in_crlf_and_none_is_too_long():
    template = newsletter(body_text="a\rb\nc\r\nd", body_html="<p>x</p>\n" * 50)
    data, _ = template.render("ann@example.com", {"name": "Ann"})
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert b"\r" not in data.replace(b"\r\n", b"")
    assert data.endswith(b"\r\n")
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    assert text(parse(data).get_body(("plain",))) == "a\nb\nc\nd\n"


def test_line_breaks_in_a_recipients_value_go_out_as_crlf():
    template = newsletter(
        body_text="Ship to:\n[[mj:address]]\n", body_html="<p>[[mj:address]]</p>"
    )
    address = "1 Main St\nSpringfield\r\nUSA\rEarth"

    data, _ = template.render("a@example.com", {"name": "A", "address": address})

    # A bare LF or CR in DATA is refused by many servers (SMTP smuggling).
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert b"\r" not in data.replace(b"\r\n", b"")
    parsed = parse(data)
    assert text(parsed.get_body(("plain",))) == (
        "Ship to:\n1 Main St\nSpringfield\nUSA\nEarth\n"
    )
    assert text(parsed.get_body(("html",))) == (
        "<p>1 Main St\nSpringfield\nUSA\nEarth</p>\n"
    )


def test_each_message_gets_its_own_message_id_on_the_jobs_domain():
    template = newsletter()
    first, first_id = template.render("a@example.com", {"name": "A"})
    second, second_id = template.render("b@example.com", {"name": "B"})
    assert first_id != second_id
    assert first_id.endswith("@news.example.com>")
    assert parse(first)["Message-ID"] == first_id
    assert parse(second)["Message-ID"] == second_id


def test_extra_headers_per_recipient_are_added():
    data, _ = newsletter().render(
        "a@example.com",
        {"name": "A"},
        extra_headers={"List-Unsubscribe": "<https://news.example.com/u/tok/>"},
    )
    parsed = parse(data)
    assert parsed["List-Unsubscribe"] == "<https://news.example.com/u/tok/>"
    assert parsed["List-Id"] == "<issue.news.example.com>"


def test_unknown_placeholders_render_empty_and_values_are_not_expanded_again():
    template = newsletter(body_text="[[mj:name]]|[[mj:city]]|[[mj:email]]\n")
    data, _ = template.render(
        "a@example.com", {"name": "[[mj:email]]", "email": "a@example.com"}
    )
    assert text(parse(data).get_body(("plain",))) == "[[mj:email]]||a@example.com\n"


def test_a_line_break_in_a_static_header_is_refused():
    with pytest.raises(HeaderInjection, match="Header 'X-Campaign' contains a line"):
        newsletter(headers={"X-Campaign": "a\r\nBcc: evil@example.com"})


def test_a_line_break_in_a_recipients_name_is_folded_never_a_new_header():
    data, _ = newsletter().render(
        "a@example.com", {"name": "Eve\r\nBcc: evil@example.com"}
    )
    parsed = parse(data)
    assert parsed["Bcc"] is None
    assert parsed["Subject"] == "The Daily for Eve Bcc: evil@example.com"
    assert parsed["To"].addresses[0].display_name == "Eve Bcc: evil@example.com"
    assert parsed["To"].addresses[0].addr_spec == "a@example.com"
