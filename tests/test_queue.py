"""The door to the queue (``mailer.queue``): bad input is refused with an
error that names the problem and nothing is written; what gets in is stored
exactly as Django would have sent it."""

from __future__ import annotations

import pytest
from django.core.mail import EmailMessage, EmailMultiAlternatives

from mailer.dbclock import database_now
from mailer.exceptions import (
    HeaderInjection,
    InvalidAddress,
    InvalidEmail,
    MessageTooLarge,
)
from mailer.models import Message, MessageStatus, Priority
from mailer.queue import enqueue, enqueue_many, held_until, parse_priority
from mailer.sending.smtp import serialize

pytestmark = pytest.mark.django_db

FIXED = {"Date": "Sat, 28 Nov 2026 10:00:00 -0000", "Message-ID": "<1@example.com>"}


def email(**kwargs) -> EmailMessage:
    fields = {
        "subject": "Hello",
        "body": "Body",
        "from_email": "news@example.com",
        "to": ["ann@example.com"],
    }
    return EmailMessage(**{**fields, **kwargs})


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"to": ["ann.example.com"]}, "Invalid address 'ann.example.com'"),
        ({"to": ["ann@example.com", "bob@"]}, "Invalid address 'bob@'"),
        ({"cc": ["Cecil <cecil@@example.com>"]}, "Invalid address 'Cecil <cecil@@"),
        ({"bcc": ["two@example.com, three@example.com"]}, "not a single address"),
        ({"reply_to": ["desk at example.com"]}, "Invalid address 'desk at example"),
        ({"from_email": "news@"}, "Invalid address 'news@'"),
        ({"to": ["jörg@example"]}, "Invalid address 'jörg@example'"),
        ({"to": ["ann@example.com\nBcc: x@evil.example"]}, "contains a line break"),
    ],
    ids=["to", "second-to", "cc", "bcc-two-in-one", "reply-to", "from", "utf8", "nl"],
)
def test_an_invalid_address_is_refused_and_named(kwargs, words):
    with pytest.raises(InvalidAddress) as raised:
        enqueue(email(**kwargs))
    assert words in str(raised.value)
    assert Message.all_objects.count() == 0


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"subject": "Hi\nBcc: x@evil.example"}, "Header 'Subject' contains a line"),
        ({"subject": "Hi\rthere"}, "Header 'Subject' contains a line break"),
        (
            {"from_email": "news@example.com\r\nBcc: x@evil.example"},
            "Header 'From' contains a line break",
        ),
        ({"headers": {"X-Tag": "a\r\nBcc: x"}}, "Header 'X-Tag' contains a line"),
        ({"headers": {"X-Tag\nBcc": "x"}}, "Header 'X-Tag\\nBcc' contains a line"),
    ],
    ids=["subject-lf", "subject-cr", "from", "header-value", "header-name"],
)
def test_a_line_break_in_a_header_is_refused_as_header_injection(kwargs, words):
    with pytest.raises(HeaderInjection) as raised:
        enqueue(email(**kwargs))
    assert words in str(raised.value)
    assert Message.all_objects.count() == 0


def test_a_non_ascii_local_part_is_accepted_but_a_non_ascii_space_is_not():
    # RFC 6531: sent with SMTPUTF8 (tests/sending/test_extensions.py).
    enqueue(email(to=["jörg@example.com"]))
    with pytest.raises(InvalidAddress, match="Invalid address 'j.xa0rg@example.com'"):
        enqueue(email(to=["j\u00a0rg@example.com"]))
    assert Message.all_objects.count() == 1


def test_an_email_without_recipients_is_refused():
    with pytest.raises(InvalidEmail, match=r"no recipients \(to, cc and bcc"):
        enqueue(email(to=[]))
    assert Message.all_objects.count() == 0


def test_the_size_limit_is_exact_and_the_error_gives_both_sizes(settings):
    size = len(serialize(email(body="x" * 5000, headers=FIXED))[0])

    settings.MAILER_MAX_MESSAGE_BYTES = size
    enqueue(email(body="x" * 5000, headers=FIXED))
    assert Message.all_objects.count() == 1

    settings.MAILER_MAX_MESSAGE_BYTES = size - 1
    with pytest.raises(MessageTooLarge) as raised:
        enqueue(email(body="x" * 5000, headers=FIXED))
    assert str(raised.value) == (
        f"The email is {size:,} bytes, over MAILER_MAX_MESSAGE_BYTES ({size - 1:,})"
    )
    assert Message.all_objects.count() == 1


def test_an_attachment_counts_towards_the_size_limit(settings):
    settings.MAILER_MAX_MESSAGE_BYTES = 100_000
    big = email()
    big.attach("scan.pdf", b"%PDF" + bytes(100_000), "application/pdf")
    with pytest.raises(MessageTooLarge, match="over MAILER_MAX_MESSAGE_BYTES"):
        enqueue(big)
    assert Message.all_objects.count() == 0


def test_every_door_error_is_an_invalid_email_and_a_value_error():
    for error in (InvalidAddress, HeaderInjection, MessageTooLarge):
        assert issubclass(error, InvalidEmail)
    assert issubclass(InvalidEmail, ValueError)


def test_a_batch_is_queued_all_or_nothing():
    with pytest.raises(HeaderInjection):
        enqueue_many([email(), email(subject="Bad\n"), email()])
    assert Message.all_objects.count() == 0

    assert len(enqueue_many([email(), email(to=["bob@example.com"])])) == 2
    assert Message.all_objects.count() == 2


def test_the_stored_bytes_are_exactly_what_django_would_send():
    message = email(subject="Grüße", body="Héllo\n", headers=FIXED)
    stored = enqueue(message)
    assert bytes(stored.mime) == serialize(message)[0]
    assert stored.message_id == "<1@example.com>"


def test_the_envelope_has_bare_addresses_every_recipient_and_punycode():
    stored = enqueue(
        EmailMultiAlternatives(
            subject="Hi",
            body="b",
            from_email="The Daily <news@bücher.example>",
            to=["Ann <ann@example.com>"],
            cc=["cecil@bücher.example"],
            bcc=["hidden@example.com"],
        )
    )
    assert stored.envelope_from == "news@xn--bcher-kva.example"
    assert stored.envelope_to == [
        "ann@example.com",
        "cecil@xn--bcher-kva.example",
        "hidden@example.com",
    ]
    assert stored.to_address == "ann@example.com"


def test_the_subject_column_is_one_line_and_fits():
    stored = enqueue(email(subject="Weekly\tnews   from  " + "x" * 300))
    assert stored.subject.startswith("Weekly news from xxx")
    assert len(stored.subject) == 255


def test_a_queued_message_is_due_at_once():
    # Due at the database's now (mailer.dbclock), the clock workers compare
    # with, read before and after queuing.
    before = database_now()
    stored = enqueue(email())
    stored.refresh_from_db()
    assert stored.status == MessageStatus.QUEUED
    assert before <= stored.due_at <= database_now()
    assert stored.claim_token is None
    assert Message.all_objects.due().filter(pk=stored.pk).exists()


def test_a_held_message_waits_until_retry_deferred():
    stored = enqueue(email(), priority="deferred")
    stored.refresh_from_db()
    assert (stored.status, stored.due_at) == (MessageStatus.DEFERRED, held_until())
    assert not Message.all_objects.due().exists()


@pytest.mark.parametrize(
    "given, expected",
    [
        ("high", (Priority.HIGH, False)),
        (" Low ", (Priority.LOW, False)),
        ("deferred", (Priority.MEDIUM, True)),
        ("2", (Priority.MEDIUM, False)),
        ("4", (Priority.MEDIUM, True)),
        (1, (Priority.HIGH, False)),
        (None, (Priority.LOW, False)),  # the default given
    ],
)
def test_parse_priority(given, expected):
    assert parse_priority(given, "low") == expected


@pytest.mark.parametrize("given", ["urgent", "", "0", 7, True, 2.0])
def test_parse_priority_refuses_anything_else(given):
    with pytest.raises(ValueError, match=f"^Unknown priority {given!r}: use 'high'"):
        parse_priority(given, "medium")
