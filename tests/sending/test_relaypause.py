"""The relay's own temporary trouble (452 4.3.1 while its disk is full, 421,
a refused connection) pauses every worker without burning attempts; an
ordinary 4xx about one message is retried for days, and a job may expire
first. (A ``send_mail --loop`` process sleeping through the pause:
tests/system/test_faults.py.)"""

from __future__ import annotations

import smtplib
from datetime import timedelta

import pytest
from django.utils import timezone

from mailer.exceptions import InvalidEmail
from mailer.jobs.expand import expand_pending_jobs
from mailer.jobs.services import RenderedEmail, create_job
from mailer.models import (
    LogResult,
    Message,
    MessageJob,
    MessageLog,
    MessageStatus,
    RelayPause,
)
from mailer.sending import outcomes, relaypause
from mailer.sending.engine import send_queued
from tests.faultlib import addresses, fill_single

pytestmark = pytest.mark.django_db

FULL = b"4.3.1 Insufficient system storage"

# -- the rules ----------------------------------------------------------------------

TROUBLE_CASES = [
    # (error, is the relay's own trouble)
    (smtplib.SMTPSenderRefused(452, FULL, "n@x.org"), True),
    (
        smtplib.SMTPSenderRefused(451, b"4.3.0 Local error in processing", "n@x.org"),
        True,
    ),
    (smtplib.SMTPSenderRefused(450, b"4.7.1 Rate limit exceeded", "n@x.org"), True),
    (smtplib.SMTPSenderRefused(451, b"Server busy", "n@x.org"), True),
    (
        smtplib.SMTPSenderRefused(450, b"4.1.8 Sender domain not found", "n@x.org"),
        False,
    ),
    (smtplib.SMTPSenderRefused(421, b"4.7.0 Closing", "n@x.org"), False),
    (smtplib.SMTPSenderRefused(550, b"5.7.1 Relaying denied", "n@x.org"), False),
    (
        smtplib.SMTPRecipientsRefused({"a@x.org": (452, FULL), "b@x.org": (452, FULL)}),
        True,
    ),
    (smtplib.SMTPRecipientsRefused({"a@x.org": (452, b"4.3.2 Not accepting")}), True),
    (
        smtplib.SMTPRecipientsRefused({"a@x.org": (451, b"4.3.0 Try again later")}),
        False,
    ),
    (
        smtplib.SMTPRecipientsRefused({"a@x.org": (452, b"4.5.3 Too many recipients")}),
        False,
    ),
    (
        smtplib.SMTPRecipientsRefused(
            {"a@x.org": (452, FULL), "b@x.org": (550, b"5.1.1 No")}
        ),
        False,
    ),
    (smtplib.SMTPRecipientsRefused({"a@x.org": (450, b"4.2.1 Mailbox busy")}), False),
    (smtplib.SMTPDataError(452, FULL), True),
    (smtplib.SMTPDataError(451, b"4.3.0 Queue file write error"), True),
    (smtplib.SMTPDataError(452, b"Insufficient system storage"), True),
    (smtplib.SMTPDataError(451, b"4.7.1 Message deferred by policy"), False),
    (smtplib.SMTPDataError(554, b"5.6.0 Message content rejected"), False),
    (smtplib.SMTPServerDisconnected("Connection unexpectedly closed"), False),
    (ConnectionResetError(104, "reset"), False),
]


@pytest.mark.parametrize("error, trouble", TROUBLE_CASES, ids=repr)
def test_what_counts_as_the_relays_own_trouble(error, trouble):
    reason = outcomes.relay_trouble(error)
    assert (reason is not None) is trouble
    if trouble:
        assert reason.startswith("relay trouble at ")
        assert str(getattr(error, "smtp_code", "")) in reason


@pytest.mark.parametrize(
    "reply, expected",
    [
        (b"4.3.1 Insufficient system storage", (4, 3, 1)),
        ("5.1.1 <a@x.org>: Recipient address rejected", (5, 1, 1)),
        (b"Try again later", None),
        (b"4.3 truncated", None),
    ],
)
def test_enhanced_status_codes_are_read_from_the_reply(reply, expected):
    assert outcomes.enhanced_code(reply) == expected


NOW = timezone.now()

RETRY_CASES = [
    # (attempt, queued hours ago, expires in hours, max attempts, expected)
    (1, 0, None, None, "due"),
    (40, 47, None, None, "due"),  # two days in: still trying
    (70, 71.5, None, None, "gave up after 70 attempts over 71.5 hours"),
    (5, 1, None, 5, "gave up after 5 attempts"),
    (4, 1, None, 5, "due"),
    (3, 1, 0.01, None, "expired at"),  # next try would be after the expiry
    (3, 1, 5, None, "due"),
]


@pytest.mark.parametrize("attempt, age, expires, cap, expected", RETRY_CASES)
def test_how_long_a_temporary_failure_is_retried(
    settings, attempt, age, expires, cap, expected
):
    settings.MAILER_MAX_ATTEMPTS = cap
    settings.MAILER_RETRY_BACKOFF_SECONDS = 60
    settings.MAILER_RETRY_BACKOFF_MAX_SECONDS = 3600
    retry = outcomes.next_try(
        attempt,
        queued_at=NOW - timedelta(hours=age),
        now=NOW,
        expires_at=NOW + timedelta(hours=expires) if expires is not None else None,
    )
    if expected == "due":
        assert retry.due_at == NOW + outcomes.backoff(attempt) and not retry.reason
    else:
        assert retry.due_at is None and retry.reason.startswith(expected)


def test_the_retry_window_defaults_to_three_days_without_an_attempt_cap():
    from mailer.conf import conf

    assert conf.MAILER_MAX_RETRY_SECONDS == 3 * 86400
    assert conf.MAILER_MAX_ATTEMPTS is None


def test_relay_pauses_double_up_to_their_cap(settings):
    settings.MAILER_RELAY_BACKOFF_SECONDS = 30
    settings.MAILER_RELAY_BACKOFF_MAX_SECONDS = 200
    lengths = [relaypause.pause_length(n).total_seconds() for n in range(1, 6)]
    assert lengths == [30, 60, 120, 200, 200]


# -- through the engine --------------------------------------------------------------


def _expire_pause() -> None:
    RelayPause.objects.update(paused_until=timezone.now() - timedelta(seconds=1))


def test_a_full_relay_pauses_the_workers_and_burns_no_attempt(settings, mailserver):
    settings.MAILER_RELAY_BACKOFF_SECONDS = 30
    queued = fill_single(addresses(20, "full"))
    mailserver.relay_trouble(452, "4.3.1 Insufficient system storage", times=2)

    first = send_queued()

    assert (first.sent, first.deferred, first.failed) == (0, 0, 0)
    assert first.stop_reason == "relay trouble"
    assert "452 4.3.1 Insufficient system storage" in first.error
    assert "relay paused for 30 s" in first.error
    assert 25 < first.wait_seconds <= 30  # what send_mail --loop sleeps
    assert first.released == 20
    assert set(
        Message.all_objects.values_list("attempts", "status", "claim_token")
    ) == {(0, MessageStatus.QUEUED, None)}
    assert not MessageLog.objects.exists()
    pause = RelayPause.objects.get()
    assert pause.failures == 1

    # Another worker (or the next cron run) does not even connect.
    connections = mailserver.connections
    second = send_queued()
    assert (second.sent, second.stop_reason) == (0, "relay paused")
    assert "trouble #1" in second.error
    assert mailserver.connections == connections
    assert second.released == 20

    # The pause ends, the relay is still full: the next pause is twice as long.
    _expire_pause()
    third = send_queued()
    assert third.stop_reason == "relay trouble"
    assert "relay paused for 60 s" in third.error
    assert RelayPause.objects.get().failures == 2

    # The relay has room again: everything goes once and the series ends.
    _expire_pause()
    last = send_queued()
    assert (last.sent, last.failed) == (20, 0)
    assert sorted(mailserver.counts) == sorted(queued)
    assert set(mailserver.counts.values()) == {1}
    assert set(Message.all_objects.values_list("attempts", flat=True)) == {1}
    assert RelayPause.objects.get().failures == 0
    assert relaypause.current() is None


def test_a_full_relay_at_the_end_of_data_burns_no_attempt(settings, mailserver):
    settings.MAILER_RELAY_BACKOFF_SECONDS = 30
    fill_single(addresses(5, "data"))
    mailserver.relay_trouble(452, "4.3.1 Insufficient system storage", at="data")

    result = send_queued()

    assert result.stop_reason == "relay trouble"
    assert "relay trouble at DATA: 452" in result.error
    assert mailserver.count == 0
    assert set(Message.all_objects.values_list("attempts", flat=True)) == {0}
    assert not MessageLog.objects.exists()


def test_a_refused_connection_pauses_the_workers_too(settings, mailserver):
    settings.MAILER_RELAY_BACKOFF_SECONDS = 45
    fill_single(addresses(3, "down"))
    mailserver.stop()

    result = send_queued()

    assert result.stop_reason == "mail server unreachable"
    assert "relay paused for 45 s" in result.error
    assert relaypause.current() is not None
    mailserver.start()
    assert send_queued().stop_reason == "relay paused"
    _expire_pause()
    assert send_queued().sent == 3


def test_without_a_relay_backoff_no_pause_is_recorded(settings, mailserver):
    settings.MAILER_RELAY_BACKOFF_SECONDS = 0
    fill_single(addresses(3, "nopause"))
    mailserver.relay_trouble(times=1)

    assert send_queued().stop_reason == "relay trouble"
    assert not RelayPause.objects.exists()
    assert send_queued().sent == 3


def test_an_ordinary_4xx_is_retried_for_days_not_five_attempts(settings, mailserver):
    settings.MAILER_RETRY_BACKOFF_SECONDS = 60
    settings.MAILER_RETRY_BACKOFF_MAX_SECONDS = 3600
    fill_single(["busy@example.com"])
    mailserver.defer(["busy@example.com"], code=452, reply="4.2.2 Mailbox full")
    message = Message.all_objects.get()

    for _ in range(8):  # more than the old cap of five attempts
        Message.all_objects.filter(pk=message.pk).update(due_at=timezone.now())
        result = send_queued()
        assert (result.deferred, result.failed) == (1, 0)
    message.refresh_from_db()
    assert (message.status, message.attempts) == (MessageStatus.DEFERRED, 8)

    # Queued three days ago: the next failure ends it, with the reason.
    Message.all_objects.filter(pk=message.pk).update(
        created_at=timezone.now() - timedelta(days=3), due_at=timezone.now()
    )
    result = send_queued()
    assert (result.deferred, result.failed) == (0, 1)
    log = MessageLog.objects.order_by("-id").first()
    assert log.result == LogResult.FAILED
    assert log.reply.startswith("gave up after 9 attempts over 72.0 hours: ")
    assert log.reply.endswith("4.2.2 Mailbox full")


def _job(**expiry) -> MessageJob:
    job = create_job(
        content=RenderedEmail(subject="Today", body_text="News for [[mj:email]]\n"),
        recipients=["a@example.com", "b@example.com"],
        **expiry,
    )
    expand_pending_jobs()
    return job


def test_job_mail_past_its_expiry_fails_as_expired_unsent(mailserver):
    job = _job(expire_after=timedelta(hours=2))
    assert job.expires_at > timezone.now() + timedelta(minutes=119)
    MessageJob.objects.filter(pk=job.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )

    result = send_queued()

    assert (result.sent, result.failed) == (0, 2)
    assert mailserver.count == 0
    assert set(Message.all_objects.values_list("status", flat=True)) == {
        MessageStatus.FAILED
    }
    replies = set(MessageLog.objects.values_list("reply", flat=True))
    assert len(replies) == 1 and replies.pop().startswith("expired at ")


def test_a_deferral_that_would_retry_after_the_expiry_fails_as_expired(
    settings, mailserver
):
    settings.MAILER_RETRY_BACKOFF_SECONDS = 600
    _job(expires_at=timezone.now() + timedelta(minutes=5))
    mailserver.defer(["b@example.com"], code=451, reply="4.7.1 Greylisted")

    result = send_queued()

    assert (result.sent, result.deferred, result.failed) == (1, 0, 1)
    failed = MessageLog.objects.get(result=LogResult.FAILED)
    assert failed.recipient == "b@example.com"
    assert failed.reply.startswith("expired at ")
    assert failed.reply.endswith("4.7.1 Greylisted")


@pytest.mark.parametrize(
    "expiry, message",
    [
        ({"expire_after": 60, "expires_at": timezone.now()}, "not both"),
        ({"expire_after": -5}, "not in the future"),
        ({"expires_at": timezone.now().replace(tzinfo=None)}, "aware"),
    ],
)
def test_a_job_expiry_that_cannot_work_is_refused(expiry, message, settings):
    if message == "aware" and not settings.USE_TZ:
        pytest.skip("naive datetimes are Django's own with USE_TZ = False")
    with pytest.raises(InvalidEmail, match=message):
        _job(**expiry)
    assert not MessageJob.objects.exists()


def test_runmailer_sleeps_through_a_relay_pause(settings, mailserver):
    from mailer.worker.loop import Worker

    settings.MAILER_RELAY_BACKOFF_SECONDS = 30
    fill_single(addresses(3, "pause"))
    mailserver.relay_trouble(452, "4.3.1 Insufficient system storage", times=1)
    lines: list[str] = []
    worker = Worker(listen=False, idle_seconds=1, write=lines.append)
    try:
        pause = worker.drain()
    finally:
        worker.waiter.close()

    # Not the 1 s idle: no run can send before the pause ends.
    assert 25 < pause <= 30
    assert "stopped: relay trouble" in lines[-1]
    assert set(Message.all_objects.values_list("status", "attempts")) == {
        (MessageStatus.QUEUED, 0)
    }


def test_no_reply_after_the_final_dot_is_in_doubt_never_relay_trouble():
    from mailer.sending.transport import InDoubt

    lost = InDoubt(TimeoutError("timed out"), host="relay:25", seconds=5)
    assert outcomes.relay_trouble(lost) is None
    assert outcomes.classify(lost).verdict is outcomes.Verdict.IN_DOUBT
    # A reply after it is the relay speaking: 452 4.3.1 there is its trouble.
    full = smtplib.SMTPDataError(452, b"4.3.1 Insufficient system storage")
    assert outcomes.relay_trouble(full).startswith("relay trouble at DATA")
