"""The body of sent single mail (a password-reset link is a live credential)
leaves the queue table after ``MAILER_SENT_BODY_RETENTION_SECONDS``; the row,
its status and its log stay (issue 12, item 10)."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

import mailer
from mailer.conf import conf
from mailer.models import LogResult, Message, MessageLog, MessageStatus

pytestmark = pytest.mark.django_db

RESET = "Reset your password: https://news.example.com/reset/MQ/abc-123/"


def command(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_with_retention_0_send_mail_drops_the_sent_body_and_keeps_the_rest(
    mailserver, settings
):
    settings.MAILER_SENT_BODY_RETENTION_SECONDS = 0
    mailer.send_mail("Reset", RESET, "news@example.com", ["ann@example.com"])
    mailer.send_mail("Later", "b", "news@example.com", ["held@example.com"], "deferred")
    mailer.send_mail("Busy", "b", "news@example.com", ["busy@example.com"])
    mailserver.defer(["busy@example.com"], code=451, reply="4.7.1 Try later", times=1)

    command("send_mail")

    [received] = mailserver.messages
    assert received.message.get_content().strip() == RESET
    sent = Message.all_objects.get(to_address="ann@example.com")
    assert (sent.status, sent.mime, sent.subject) == (MessageStatus.SENT, None, "Reset")
    assert MessageLog.objects.get(message_pk=sent.pk).result == LogResult.SENT
    for address in ("held@example.com", "busy@example.com"):
        waiting = Message.all_objects.get(to_address=address)
        assert waiting.status == MessageStatus.DEFERRED
        assert b"Subject: " in bytes(waiting.mime)


def test_purge_mail_bodies_drops_bodies_sent_longer_ago_than_the_retention(
    mailserver, settings
):
    settings.MAILER_SENT_BODY_RETENTION_SECONDS = 3600
    mailer.send_mail("Reset", RESET, "news@example.com", ["ann@example.com"])
    mailer.send_mail("Reset", RESET, "news@example.com", ["bob@example.com"])
    command("send_mail")
    assert Message.all_objects.filter(mime__isnull=False).count() == 2
    assert command("purge_mail_bodies") == "0 sent email bodies dropped\n"

    ann = Message.all_objects.get(to_address="ann@example.com")
    MessageLog.objects.filter(message_pk=ann.pk).update(
        created_at=timezone.now() - timedelta(seconds=3601)
    )
    assert command("purge_mail_bodies") == "1 sent email body dropped\n"
    assert list(
        Message.all_objects.filter(mime__isnull=True).values_list(
            "to_address", flat=True
        )
    ) == ["ann@example.com"]
    assert command("purge_mail_bodies", "--seconds", "0") == (
        "1 sent email body dropped\n"
    )
    assert MessageLog.objects.filter(result=LogResult.SENT).count() == 2


def test_the_retention_must_not_be_negative(settings):
    settings.MAILER_SENT_BODY_RETENTION_SECONDS = -1
    with pytest.raises(ValueError, match="must be 0 or more, not -1"):
        _ = conf.MAILER_SENT_BODY_RETENTION_SECONDS
