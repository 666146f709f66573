"""One email to many recipients, some refused at RCPT: the accepted ones get
exactly one copy, 4xx ones are retried alone, 5xx ones fail."""

from __future__ import annotations

import pytest
from django.utils import timezone

import mailer
from mailer.models import LogResult, Message, MessageLog, MessageStatus
from mailer.sending.engine import send_queued
from mailer.sending.partial import split_refusals

pytestmark = pytest.mark.django_db


def test_refusals_split_into_retry_and_failed():
    split = split_refusals(
        {
            "a@x.org": (452, b"4.5.3 Too many recipients"),
            "b@x.org": (550, b"5.1.1 No such user"),
            "c@x.org": (421, b"4.7.0 Closing"),
            "d@x.org": (553, "5.1.3 Bad address"),
        }
    )
    assert split.retry == {
        "a@x.org": (452, "4.5.3 Too many recipients"),
        "c@x.org": (421, "4.7.0 Closing"),
    }
    assert split.failed == {
        "b@x.org": (550, "5.1.1 No such user"),
        "d@x.org": (553, "5.1.3 Bad address"),
    }


def test_an_email_to_1100_recipients_with_refused_rcpts(mailserver):
    recipients = [f"reader{i:04d}@example.com" for i in range(1100)]
    busy = recipients[100:1100:200]  # 5 answered 452 once
    gone = [recipients[7], recipients[1099]]  # 2 answered 550
    mailer.send_mail("Minutes", "The minutes.", "club@example.com", recipients)
    original = Message.all_objects.get()
    mailserver.defer(busy, code=452, reply="4.5.3 Too many recipients", times=1)
    mailserver.reject(gone, code=550, reply="5.1.1 No such user")

    first = send_queued()

    assert (first.sent, first.failed, first.deferred) == (1, 0, 0)
    (received,) = mailserver.messages
    served = set(recipients) - set(busy) - set(gone)
    assert sorted(received.rcpt_tos) == sorted(served)
    original.refresh_from_db()
    assert (original.status, original.attempts) == (MessageStatus.SENT, 1)
    retry = Message.all_objects.get(retry_of=original)
    assert (retry.status, retry.attempts) == (MessageStatus.DEFERRED, 1)
    assert retry.envelope_to == busy
    assert bytes(retry.mime) == bytes(original.mime)
    assert retry.message_id == original.message_id
    assert retry.created_at == original.created_at
    assert retry.due_at > timezone.now()
    failed = MessageLog.objects.filter(result=LogResult.FAILED)
    assert sorted(failed.values_list("recipient", "smtp_code")) == [
        (a, 550) for a in sorted(gone)
    ]
    deferred = MessageLog.objects.filter(result=LogResult.DEFERRED)
    assert sorted(deferred.values_list("recipient", flat=True)) == sorted(busy)
    assert set(deferred.values_list("message_pk", flat=True)) == {retry.pk}

    # Not due yet: nothing more goes out.
    assert send_queued().sent == 0
    Message.all_objects.filter(pk=retry.pk).update(due_at=timezone.now())
    second = send_queued()

    assert (second.sent, second.failed) == (1, 0)
    assert mailserver.count == 2
    assert sorted(mailserver.messages[1].rcpt_tos) == sorted(busy)
    assert mailserver.messages[1].data == received.data  # the same email
    counts = mailserver.counts
    assert set(counts) == served | set(busy)
    assert set(counts.values()) == {1}
    assert not set(counts) & set(gone)
    assert not Message.all_objects.exclude(status=MessageStatus.SENT).exists()


def test_a_4xx_recipient_past_the_retry_window_fails_instead(settings, mailserver):
    settings.MAILER_MAX_RETRY_SECONDS = 30
    settings.MAILER_RETRY_BACKOFF_SECONDS = 60
    mailer.send_mail("Hi", "b", "a@example.com", ["ok@example.com", "busy@example.com"])
    mailserver.defer(["busy@example.com"], code=451, reply="4.7.1 Greylisted")

    assert send_queued().sent == 1

    assert Message.all_objects.count() == 1
    failed = MessageLog.objects.get(result=LogResult.FAILED)
    assert failed.recipient == "busy@example.com"
    assert failed.reply.startswith("gave up after 1 attempts")
