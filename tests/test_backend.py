"""``mailer.backend.DbBackend`` as the project's email backend: whatever
Django's mail API builds is queued, and arrives at the SMTP server intact."""

from __future__ import annotations

import django
import pytest
from django.core import mail
from django.core.mail import EmailMessage, EmailMultiAlternatives

from mailer.backend import DbBackend
from mailer.exceptions import HeaderInjection, InvalidAddress
from mailer.models import Message, Priority
from mailer.sending.engine import send_queued

pytestmark = pytest.mark.django_db

#: Every byte value, so a transfer encoding that mangles one shows.
BINARY = bytes(range(256)) * 4


def text(part) -> str:
    return part.get_content().replace("\r\n", "\n").rstrip("\n") + "\n"


def header_section(data: bytes) -> bytes:
    return data.split(b"\r\n\r\n", 1)[0]


def backend(**options) -> DbBackend:
    """The configured default backend, as Django's own API would get it."""
    if django.VERSION >= (6, 1):
        return mail.mailers.default if not options else DbBackend(**options)
    return mail.get_connection(**options)


def test_django_send_mail_is_queued_not_sent_and_goes_out_with_high_priority(
    mailserver,
):
    sent = mail.send_mail(
        "Reset your password",
        "Follow https://example.com/reset/abc/ to choose a new one.",
        "Site <site@example.com>",
        ["ann@example.com"],
    )

    assert sent == 1
    assert mailserver.count == 0
    message = Message.all_objects.get()
    assert message.priority == Priority.HIGH

    assert send_queued().sent == 1
    (received,) = mailserver.messages
    assert received.rcpt_tos == ["ann@example.com"]
    assert received.message["Subject"] == "Reset your password"
    assert text(received.message) == (
        "Follow https://example.com/reset/abc/ to choose a new one.\n"
    )


def rich_email() -> EmailMultiAlternatives:
    email = EmailMultiAlternatives(
        subject="Grüße aus Köln ✓ – Ausgabe 7",
        body="Hallo Jörg,\n\nder Bericht hängt an.\n",
        from_email="Redaktion Köln <redaktion@bücher.example>",
        to=["Jörg Müller <joerg@bücher.example>", "ann@example.com"],
        cc=["Cecil <cecil@example.com>"],
        bcc=["hidden@example.com"],
        reply_to=["Desk <desk@example.com>"],
        headers={"X-Campaign": "köln-7", "List-Id": "<daily.example.com>"},
    )
    email.attach_alternative("<p>Hallo <b>Jörg</b> &amp; Co.</p>", "text/html")
    email.attach("Bericht Köln.csv", "Stadt,Leser\nKöln,7\n", "text/csv")
    email.attach("logo.bin", BINARY, "application/octet-stream")
    return email


def test_a_rich_email_survives_the_round_trip_through_the_queue(mailserver):
    email = rich_email()
    assert email.send() == 1
    assert Message.all_objects.count() == 1  # one row, however many recipients

    send_queued()

    (received,) = mailserver.messages
    parsed = received.message
    assert parsed["Subject"] == "Grüße aus Köln ✓ – Ausgabe 7"
    assert [(a.display_name, a.addr_spec) for a in parsed["From"].addresses] == [
        ("Redaktion Köln", "redaktion@xn--bcher-kva.example")
    ]
    assert [(a.display_name, a.addr_spec) for a in parsed["To"].addresses] == [
        ("Jörg Müller", "joerg@xn--bcher-kva.example"),
        ("", "ann@example.com"),
    ]
    assert parsed["Cc"] == "Cecil <cecil@example.com>"
    assert parsed["Reply-To"] == "Desk <desk@example.com>"
    assert parsed["X-Campaign"] == "köln-7"
    assert parsed["List-Id"] == "<daily.example.com>"
    assert parsed["Message-ID"] == Message.all_objects.get().message_id
    assert text(parsed.get_body(("plain",))) == "Hallo Jörg,\n\nder Bericht hängt an.\n"
    assert text(parsed.get_body(("html",))) == "<p>Hallo <b>Jörg</b> &amp; Co.</p>\n"
    attachments = {
        part.get_filename(): (part.get_content_type(), part.get_content())
        for part in parsed.iter_attachments()
    }
    assert sorted(attachments) == ["Bericht Köln.csv", "logo.bin"]
    csv_type, csv = attachments["Bericht Köln.csv"]
    assert (csv_type, csv.replace("\r\n", "\n")) == (
        "text/csv",
        "Stadt,Leser\nKöln,7\n",
    )
    assert attachments["logo.bin"] == ("application/octet-stream", BINARY)


def test_bcc_recipients_are_in_the_envelope_and_nowhere_in_the_message(mailserver):
    rich_email().send()
    send_queued()

    (received,) = mailserver.messages
    assert received.rcpt_tos == [
        "joerg@xn--bcher-kva.example",
        "ann@example.com",
        "cecil@example.com",
        "hidden@example.com",
    ]
    assert received.message["Bcc"] is None
    assert b"hidden@example.com" not in received.data


def test_internationalised_domains_go_out_in_punycode(mailserver):
    rich_email().send()
    send_queued()

    (received,) = mailserver.messages
    assert received.mail_from == "redaktion@xn--bcher-kva.example"
    assert received.rcpt_tos[0] == "joerg@xn--bcher-kva.example"
    headers = header_section(received.data)
    assert headers.isascii()  # non-ASCII names and subject are RFC 2047 words
    assert b"<joerg@xn--bcher-kva.example>" in headers
    assert b"<redaktion@xn--bcher-kva.example>" in headers
    assert "bücher".encode() not in received.data


def test_each_email_of_a_batch_is_queued_and_counted(mailserver):
    emails = [
        EmailMessage(subject=f"N{i}", body="b", to=[f"r{i}@example.com"])
        for i in range(3)
    ]
    with backend() as connection:
        assert connection.send_messages(emails) == 3
        assert connection.send_messages([]) == 0
    assert sorted(Message.all_objects.values_list("subject", flat=True)) == [
        "N0",
        "N1",
        "N2",
    ]
    assert mailserver.count == 0


def test_an_email_without_recipients_is_skipped_like_djangos_smtp_backend_does(
    mailserver,
):
    queued = mail.send_mass_mail(
        [
            ("To nobody", "b", "a@example.com", []),
            ("To Ann", "b", "a@example.com", ["ann@example.com"]),
        ]
    )
    assert queued == 1
    assert list(Message.all_objects.values_list("subject", flat=True)) == ["To Ann"]


def test_the_backend_priority_is_a_setting(mailserver, settings):
    settings.MAILER_BACKEND_PRIORITY = "low"
    mail.send_mail("Digest", "b", "a@example.com", ["b@example.com"])
    assert Message.all_objects.get().priority == Priority.LOW


def test_a_backend_instance_can_have_its_own_priority(mailserver, settings):
    if django.VERSION >= (6, 1):
        settings.MAILERS = {
            **settings.MAILERS,
            "bulk": {
                "BACKEND": "mailer.backend.DbBackend",
                "OPTIONS": {"priority": "low"},
            },
        }
        connection = mail.mailers["bulk"]
    else:
        connection = mail.get_connection("mailer.backend.DbBackend", priority="low")
    EmailMessage(subject="Digest", body="b", to=["b@example.com"]).send()
    connection.send_messages(
        [EmailMessage(subject="Bulk", body="b", to=["c@example.com"])]
    )
    assert dict(Message.all_objects.values_list("subject", "priority")) == {
        "Digest": Priority.HIGH,
        "Bulk": Priority.LOW,
    }


@pytest.mark.parametrize(
    "email, error, words",
    [
        (
            EmailMessage(subject="Hi", body="b", to=["ann@example.com", "ann at x"]),
            InvalidAddress,
            "Invalid address 'ann at x'",
        ),
        (
            EmailMessage(subject="Hi", body="b", to=["a@x.com"], cc=["@x.com"]),
            InvalidAddress,
            "Invalid address '@x.com'",
        ),
        (
            EmailMessage(subject="Hi", body="b", to=["a@x.com"], reply_to=["desk@"]),
            InvalidAddress,
            "Invalid address 'desk@'",
        ),
        (
            EmailMessage(
                subject="Hi", body="b", to=["a@x.com"], headers={"X-Tag": "a\nb"}
            ),
            HeaderInjection,
            "Header 'X-Tag' contains a line break",
        ),
    ],
    ids=["to", "cc", "reply-to", "header"],
)
def test_bad_input_through_djangos_api_is_refused_and_nothing_is_queued(
    mailserver, email, error, words
):
    with pytest.raises(error) as raised:
        email.send()
    assert words in str(raised.value)
    assert Message.all_objects.count() == 0
