"""Bad input is stopped at the door with a clear error, and nothing is queued;
what passes the door comes out exactly as Django would have sent it."""

from __future__ import annotations

import email
import email.policy

import pytest
from django.core.mail import EmailMessage, EmailMultiAlternatives

import mailer
from mailer.exceptions import (
    HeaderInjection,
    InvalidAddress,
    InvalidEmail,
    MessageTooLarge,
)
from mailer.jobs.compose import JobTemplate
from mailer.models import Message, MessageStatus, Priority
from mailer.queue import enqueue
from mailer.sending.engine import send_queued
from mailer.sending.smtp import serialize

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "call, error, words",
    [
        (
            lambda: mailer.send_mail(
                "Hi\nBcc: x@evil.example", "b", "a@x.com", ["b@x.com"]
            ),
            HeaderInjection,
            "Header 'Subject' contains a line break",
        ),
        (
            lambda: mailer.send_mail(
                "Hi", "b", "a@x.com\nBcc: x@evil.example", ["b@x.com"]
            ),
            HeaderInjection,
            "Header 'From' contains a line break",
        ),
        (
            lambda: mailer.send_html_mail(
                "Hi", "b", "<p>b</p>", "a@x.com", ["b@x.com"], headers={"X-A": "1\r\n2"}
            ),
            HeaderInjection,
            "Header 'X-A' contains a line break",
        ),
        (
            lambda: mailer.send_mail("Hi", "b", "a@x.com", ["not-an-address"]),
            InvalidAddress,
            "Invalid address 'not-an-address'",
        ),
        (
            lambda: mailer.send_mail("Hi", "b", "a@x.com", []),
            InvalidEmail,
            "no recipients",
        ),
        (
            lambda: mailer.send_mail(
                "Hi", "b", "a@x.com", ["b@x.com"], priority="urgent"
            ),
            ValueError,
            "Unknown priority 'urgent'",
        ),
    ],
)
def test_bad_input_is_refused_with_a_clear_error(call, error, words):
    with pytest.raises(error) as raised:
        call()
    assert words in str(raised.value)
    assert not Message.all_objects.exists()


def test_an_oversize_message_is_refused(settings):
    settings.MAILER_MAX_MESSAGE_BYTES = 10_000
    with pytest.raises(MessageTooLarge, match="over MAILER_MAX_MESSAGE_BYTES"):
        mailer.send_mail("Big", "x" * 20_000, "a@x.com", ["b@x.com"])
    assert not Message.all_objects.exists()


def test_one_bad_email_in_a_mass_mailing_queues_none():
    with pytest.raises(InvalidAddress):
        mailer.send_mass_mail(
            [
                ("A", "a", "a@x.com", ["ok@x.com"]),
                ("B", "b", "a@x.com", ["bad address"]),
            ]
        )
    assert not Message.all_objects.exists()


def test_fail_silently_returns_zero_instead():
    assert mailer.send_mail("Hi", "b", "a@x.com", ["nope"], fail_silently=True) == 0
    assert not Message.all_objects.exists()


def test_priorities_and_held_mail():
    mailer.send_mail("H", "b", "a@x.com", ["h@x.com"], priority="high")
    mailer.send_mail("L", "b", "a@x.com", ["l@x.com"], priority="low")
    mailer.send_mail("M", "b", "a@x.com", ["m@x.com"])
    mailer.send_mail("D", "b", "a@x.com", ["d@x.com"], priority="deferred")
    rows = dict(Message.all_objects.values_list("to_address", "priority"))
    assert rows == {
        "h@x.com": Priority.HIGH,
        "l@x.com": Priority.LOW,
        "m@x.com": Priority.MEDIUM,
        "d@x.com": Priority.MEDIUM,
    }
    held = Message.all_objects.get(to_address="d@x.com")
    assert held.status == MessageStatus.DEFERRED
    assert held.due_at.year == 9999  # waits for retry_deferred


def test_an_idn_address_is_delivered_in_punycode(mailserver):
    mailer.send_mail("Grüße", "Hallo", "news@example.com", ["joerg@bücher.example"])
    send_queued()
    (received,) = mailserver.messages
    assert received.rcpt_tos == ["joerg@xn--bcher-kva.example"]
    assert received.message["Subject"] == "Grüße"
    assert received.message["To"].addresses[0].domain in (
        "xn--bcher-kva.example",
        "bücher.example",
    )


def test_a_non_ascii_local_part_is_accepted_but_a_non_ascii_space_is_not():
    # RFC 6531: sent with SMTPUTF8 (tests/test_smtp_extensions.py).
    mailer.send_mail("Hi", "b", "a@x.com", ["jörg@example.com"])
    with pytest.raises(InvalidAddress, match="Invalid address 'j.xa0rg@example.com'"):
        mailer.send_mail("Hi", "b", "a@x.com", ["j\u00a0rg@example.com"])


def test_the_queued_bytes_are_what_django_would_send():
    message = EmailMultiAlternatives(
        subject="Ünïcode",
        body="Body",
        from_email="a@example.com",
        to=["b@example.com"],
        cc=["c@example.com"],
        bcc=["d@example.com"],
        headers={
            "Message-ID": "<fixed@example.com>",
            "Date": "Sat, 28 Nov 2026 10:00:00 -0000",
        },
    )
    message.attach_alternative("<p>Body</p>", "text/html")
    queued = enqueue(message)
    # Byte for byte but for the random MIME boundary.
    stored, direct = bytes(queued.mime), serialize(message)[0]
    boundary = parse(stored).get_boundary().encode()
    assert stored.replace(boundary, b"B") == direct.replace(
        parse(direct).get_boundary().encode(), b"B"
    )
    assert queued.envelope_to == ["b@example.com", "c@example.com", "d@example.com"]
    assert queued.message_id == "<fixed@example.com>"


def parse(data: bytes):
    return email.message_from_bytes(data, policy=email.policy.default)


def plain(part) -> str:
    return part.get_content().replace("\r\n", "\n").rstrip("\n")


@pytest.mark.parametrize(
    "name, text, html",
    [
        ("Ann", "Hello Ann\nBye", "<p>Hello Ann</p>"),
        ("Zoë “Z” Ånström", "Héllo Zoë “Z” Ånström ✓", "<p>Héllo ✓</p>"),
        ("Long", "x" * 2500 + "\nend", "<p>" + "y" * 3000 + "</p>"),
        ("Dots", ".\n..\n.leading dot\nfrom the start", "<p>.</p>"),
    ],
)
def test_a_job_message_parses_back_like_djangos_own(name, text, html):
    """The fast per-recipient builder against Django's EmailMultiAlternatives:
    a parser must read back the same headers and bodies."""
    template = JobTemplate(
        subject="News for [[mj:name]]",
        from_email="The Daily <news@example.com>",
        body_text=text.replace(name, "[[mj:name]]") if name in text else text,
        body_html=html,
        headers={"List-Id": "<daily.example.com>"},
        message_id_domain="example.com",
    )
    ours, message_id = template.render("reader@example.com", {"name": name})
    django_message = EmailMultiAlternatives(
        subject=f"News for {name}",
        body=text,
        from_email="The Daily <news@example.com>",
        to=[f"{name} <reader@example.com>"],
        headers={"List-Id": "<daily.example.com>"},
    )
    django_message.attach_alternative(html, "text/html")
    theirs = parse(serialize(django_message)[0])
    mine = parse(ours)

    for header in ("Subject", "From", "List-Id", "MIME-Version"):
        assert str(mine[header]) == str(theirs[header]), header
    assert mine["To"].addresses == theirs["To"].addresses
    assert mine["Message-ID"] == message_id
    assert mine.get_content_type() == theirs.get_content_type()
    for kind in ("plain", "html"):
        assert plain(mine.get_body((kind,))) == plain(theirs.get_body((kind,)))
    assert all(len(line) <= 998 for line in ours.split(b"\r\n"))


def test_header_values_from_a_job_cannot_inject_headers():
    with pytest.raises(HeaderInjection):
        JobTemplate(
            subject="x",
            from_email="news@example.com",
            body_text="b",
            headers={"X-Campaign": "a\r\nBcc: evil@example.com"},
        )


def test_a_personalised_subject_with_a_line_break_is_folded_not_injected():
    template = JobTemplate(
        subject="Hi [[mj:name]]", from_email="news@example.com", body_text="b"
    )
    data, _ = template.render("r@example.com", {"name": "Eve\r\nBcc: evil@example.com"})
    message = parse(data)
    assert message["Bcc"] is None
    assert message["Subject"] == "Hi Eve Bcc: evil@example.com"
    assert message["To"].addresses[0].display_name == "Eve Bcc: evil@example.com"


def test_email_message_without_html_round_trips(mailserver):
    EmailMessage(
        subject="Plain",
        body="Just text",
        from_email="a@example.com",
        to=["b@example.com"],
    ).send()  # through DbBackend, the configured EMAIL_BACKEND / MAILERS default
    assert Message.all_objects.get().priority == Priority.HIGH
    send_queued()
    assert plain(mailserver.messages[0].message) == "Just text"
