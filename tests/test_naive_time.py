"""``USE_TZ = False``: the queue, expansion, sending, retries and purges with
naive datetimes, on whatever database the env runs (SQLite and PostgreSQL in
tox). Django refuses an aware datetime there on SQLite and MySQL; a held
message's due date was one (issue 12, item 7).

The whole suite also runs so with ``MAILER_TEST_USE_TZ=0`` (tests/settings.py).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

import mailer
from mailer.jobs.expand import expand_pending_jobs
from mailer.jobs.services import RenderedEmail, create_job
from mailer.models import LogResult, Message, MessageLog, MessageStatus
from mailer.retention import purge_sent_bodies
from mailer.sending.engine import purge_log, retry_deferred, send_queued
from tests.conftest import by_recipient

pytestmark = pytest.mark.django_db


@pytest.fixture
def naive(settings):
    settings.USE_TZ = False
    settings.TIME_ZONE = "America/Chicago"
    assert not timezone.is_aware(timezone.now())


def test_held_single_mail_is_queued_sent_after_retry_and_purged(naive, mailserver):
    mailer.send_mail(
        "Held", "Body", "news@example.com", ["held@example.com"], "deferred"
    )
    held = Message.all_objects.get()
    assert held.status == MessageStatus.DEFERRED
    assert held.due_at.year == 9999 and timezone.is_naive(held.due_at)

    assert send_queued().attempted == 0
    assert retry_deferred() == 1
    assert send_queued().sent == 1

    [received] = mailserver.messages
    assert received.rcpt_tos == ["held@example.com"]
    assert received.message["Subject"] == "Held"
    assert MessageLog.objects.get().result == LogResult.SENT
    assert purge_sent_bodies(seconds=0) == 1
    assert Message.all_objects.get().mime is None
    MessageLog.objects.update(created_at=timezone.now() - timedelta(days=3))
    assert purge_log(2) == 1


def test_job_mail_is_expanded_deferred_by_the_server_and_sent_later(naive, mailserver):
    create_job(
        content=RenderedEmail(subject="News", body_text="Hello [[mj:name]]"),
        recipients=[{"email": "ann@example.com", "name": "Ann"}, "bob@example.com"],
    )
    mailserver.defer(["bob@example.com"], code=451, reply="4.7.1 Greylisted", times=1)

    assert expand_pending_jobs().queued == 2
    first = send_queued()
    assert (first.sent, first.deferred) == (1, 1)
    bob = Message.all_objects.get(to_address="bob@example.com")
    assert bob.status == MessageStatus.DEFERRED and timezone.is_naive(bob.due_at)

    assert retry_deferred() == 1
    assert send_queued().sent == 1
    assert sorted(m.rcpt_tos[0] for m in mailserver.messages) == [
        "ann@example.com",
        "bob@example.com",
    ]
    bodies = {
        a: m.message.get_content() for a, m in by_recipient(mailserver.messages).items()
    }
    assert bodies["ann@example.com"].startswith("Hello Ann")
    call_command("purge_mail_log", "0", "-r", "all")
    assert MessageLog.objects.count() == 0
