"""The send loop against a real SMTP server: one reused connection, every
reply judged, every outcome recorded at once, limits honoured."""

from __future__ import annotations

import re
import signal
import time
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import mailer
from mailer.engine import retry_deferred, send_queued
from mailer.models import (
    DontSendEntry,
    LogResult,
    Message,
    MessageLog,
    MessageStatus,
    Priority,
)
from tests.conftest import run_command, start_command

pytestmark = pytest.mark.django_db

SUMMARY = re.compile(
    r"sent (\d+), deferred (\d+), failed (\d+), suppressed (\d+) in \d+\.\d\ds "
    r"\(\d+\.\d/s\); stopped: [a-z ]+\n"
)


def queue(n: int, *, prefix: str = "r", priority: str = "medium") -> list[str]:
    addresses = [f"{prefix}{i}@example.com" for i in range(n)]
    mailer.send_mass_mail(
        [(f"Hello {a}", "Body", "news@example.com", [a]) for a in addresses],
        priority=priority,
    )
    return addresses


def send_mail_command(*args: str) -> str:
    out = StringIO()
    call_command("send_mail", *args, stdout=out)
    return out.getvalue()


def test_a_run_sends_everything_over_one_connection(mailserver):
    addresses = queue(30)

    out = send_mail_command()

    assert SUMMARY.fullmatch(out).groups() == ("30", "0", "0", "0")
    assert sorted(mailserver.counts) == sorted(addresses)
    assert set(mailserver.counts.values()) == {1}
    assert mailserver.connections == 1
    assert Message.objects.filter(status=MessageStatus.SENT).count() == 30
    assert not Message.objects.filter(due_at__isnull=False).exists()
    assert MessageLog.objects.filter(result=LogResult.SENT, smtp_code=250).count() == 30


def test_a_permanent_rejection_fails_once_and_is_never_retried(mailserver):
    queue(3)
    mailserver.reject(["r1@example.com"], code=550, reply="5.7.1 Rejected")

    first = send_queued()
    retry_deferred()
    second = send_queued()

    assert (first.sent, first.failed, second.sent, second.failed) == (2, 1, 0, 0)
    failed = Message.objects.get(to_address="r1@example.com")
    assert (failed.status, failed.attempts, failed.due_at) == (
        MessageStatus.FAILED,
        1,
        None,
    )
    log = MessageLog.objects.get(recipient="r1@example.com")
    assert (log.result, log.smtp_code, log.attempt) == (LogResult.FAILED, 550, 1)
    assert "5.7.1 Rejected" in log.reply
    assert mailserver.counts["r1@example.com"] == 0


def test_a_temporary_rejection_is_deferred_with_backoff_then_delivered(
    mailserver, settings
):
    settings.MAILER_RETRY_BACKOFF_SECONDS = 60
    queue(2)
    mailserver.defer(["r0@example.com"], code=451, reply="4.3.0 Busy", times=1)

    before = timezone.now()
    first = send_queued()

    assert (first.sent, first.deferred) == (1, 1)
    deferred = Message.objects.get(to_address="r0@example.com")
    assert deferred.status == MessageStatus.DEFERRED
    assert deferred.due_at >= before + timedelta(seconds=59)
    assert send_queued().attempted == 0  # not due yet

    assert retry_deferred() == 1
    assert send_queued().sent == 1
    assert mailserver.counts["r0@example.com"] == 1
    assert list(
        MessageLog.objects.filter(recipient="r0@example.com")
        .order_by("id")
        .values_list("result", "smtp_code", "attempt")
    ) == [(LogResult.DEFERRED, 451, 1), (LogResult.SENT, 250, 2)]


def test_backoff_doubles_and_the_attempt_cap_fails_the_message(mailserver, settings):
    settings.MAILER_MAX_ATTEMPTS = 3
    settings.MAILER_RETRY_BACKOFF_SECONDS = 10
    queue(1)
    mailserver.defer(["r0@example.com"], code=450, reply="4.2.1 Later")

    delays = []
    for _ in range(3):
        start = timezone.now()
        send_queued()
        message = Message.objects.get()
        if message.due_at:
            delays.append(round((message.due_at - start).total_seconds() / 10))
        retry_deferred()

    message = Message.objects.get()
    assert delays == [1, 2]
    assert (message.status, message.attempts) == (MessageStatus.FAILED, 3)
    last = MessageLog.objects.latest("id")
    assert last.result == LogResult.FAILED
    assert last.reply.startswith("gave up after 3 attempts: ")
    assert send_queued().attempted == 0


@pytest.mark.parametrize("fault", ["disconnect", "421"])
def test_a_dropped_connection_is_reopened_and_nothing_is_lost(mailserver, fault):
    addresses = queue(120)
    if fault == "disconnect":
        mailserver.disconnect_after(50)
    else:
        mailserver.reply_421_after(50)

    result = send_queued()

    assert result.sent == 120 and result.deferred == result.failed == 0
    assert sorted(mailserver.counts) == sorted(addresses)
    assert set(mailserver.counts.values()) == {1}
    assert mailserver.connections == 3
    assert not Message.objects.exclude(attempts=1).exists()


def test_server_down_stops_the_run_releases_claims_and_burns_no_attempt(
    mailserver,
):
    queue(5)
    mailserver.down()

    with pytest.raises(CommandError) as raised:
        send_mail_command()

    assert raised.value.returncode == 2
    assert str(raised.value).startswith("cannot connect to the mail server: ")
    assert "\n" not in str(raised.value)
    assert not Message.objects.exclude(attempts=0).exists()
    assert not Message.objects.filter(claim_token__isnull=False).exists()
    assert Message.objects.filter(due_at__lte=timezone.now()).count() == 5
    assert not MessageLog.objects.exists()

    mailserver.up()
    assert SUMMARY.fullmatch(send_mail_command()).groups() == ("5", "0", "0", "0")


def test_a_message_that_cannot_be_built_fails_and_the_batch_goes_on(mailserver):
    queue(3)
    broken = Message.objects.get(to_address="r1@example.com")
    Message.objects.filter(pk=broken.pk).update(mime=None)

    result = send_queued()

    assert (result.sent, result.failed) == (2, 1)
    log = MessageLog.objects.get(recipient="r1@example.com")
    assert log.result == LogResult.FAILED
    assert log.reply.startswith("cannot build message: ")
    assert sorted(mailserver.counts) == ["r0@example.com", "r2@example.com"]


def test_the_dont_send_list_is_checked_right_before_sending(mailserver):
    queue(3)
    DontSendEntry.objects.create(address="R2@Example.com")

    result = send_queued()

    assert (result.sent, result.suppressed) == (2, 1)
    assert "r2@example.com" not in mailserver.counts
    assert Message.objects.get(to_address="r2@example.com").status == (
        MessageStatus.SUPPRESSED
    )
    assert MessageLog.objects.filter(
        recipient="r2@example.com", result=LogResult.SUPPRESSED
    ).exists()


def test_max_messages_and_batch_size_limit_a_run(mailserver, settings):
    queue(25)

    out = send_mail_command("--max-messages", "7", "--batch-size", "3")

    assert SUMMARY.fullmatch(out).groups() == ("7", "0", "0", "0")
    assert "stopped: message limit" in out
    settings.MAILER_EMAIL_MAX_BATCH = 5
    assert SUMMARY.fullmatch(send_mail_command()).groups() == ("5", "0", "0", "0")
    assert mailserver.count == 12


def test_max_seconds_stops_a_slow_run_and_gives_back_its_claims(mailserver):
    queue(50)
    mailserver.delay(0.2)

    started = time.monotonic()
    result = send_queued(max_seconds=1.0, batch_size=50)
    elapsed = time.monotonic() - started

    assert result.stop_reason == "time limit"
    assert 3 <= result.sent <= 7
    assert elapsed < 2.0
    assert result.released == 50 - result.sent
    assert not Message.objects.filter(claim_token__isnull=False).exists()
    assert (
        Message.objects.filter(due_at__lte=timezone.now()).count() == 50 - result.sent
    )


def test_throttle_spaces_messages_out(mailserver):
    queue(6)
    started = time.monotonic()
    send_queued(throttle=10)
    assert time.monotonic() - started >= 0.5
    arrivals = [m.received_at for m in mailserver.messages]
    assert arrivals[-1] - arrivals[0] >= 0.45


def test_bad_limits_are_refused():
    for args in (["--max-messages", "0"], ["--throttle", "-1"], ["--batch-size", "0"]):
        with pytest.raises(CommandError, match="must be positive"):
            send_mail_command(*args)


def test_an_empty_queue_costs_one_query(transactional_db, mailserver):
    # transactional_db: outside a test transaction, as cron runs it (inside
    # one, PostgreSQL's claim transaction would show up as savepoints).
    with CaptureQueriesContext(connection) as queries:
        result = send_queued()
    assert result.attempted == 0 and result.stop_reason == "queue empty"
    assert len(queries) == 1, [q["sql"] for q in queries]
    assert mailserver.connections == 0


def test_high_priority_mail_overtakes_a_draining_newsletter(mailserver, settings):
    settings.MAILER_BATCH_SIZE = 100
    now = timezone.now()
    Message.objects.bulk_create(
        [
            Message(
                to_address=f"n{i}@example.com",
                envelope_from="news@example.com",
                envelope_to=[f"n{i}@example.com"],
                mime=f"To: n{i}@example.com\r\nSubject: News\r\n\r\nNews\r\n".encode(),
                priority=Priority.MEDIUM,
                due_at=now,
            )
            for i in range(20_000)
        ],
        batch_size=2000,
    )
    reset_sent_at = {}

    def queue_reset_midway(result) -> None:
        if result.batches == 3 and not reset_sent_at:
            reset_sent_at["received_before"] = mailserver.count
            mailer.send_mail(
                "Reset", "link", "site@example.com", ["reset@example.com"], "high"
            )

    send_queued(max_messages=1000, on_progress=queue_reset_midway)

    order = [m.rcpt_tos[0] for m in mailserver.messages]
    position = order.index("reset@example.com")
    # Queued after batch 3 (300 sent), out as the first of batch 4.
    assert reset_sent_at["received_before"] == 300
    assert position == 300
    assert Message.objects.filter(status=MessageStatus.QUEUED).count() == 19_001


def test_two_workers_on_one_queue_deliver_each_message_exactly_once(
    transactional_db, worker_env
):
    from mailer.testing.smtp import SMTPTestServer  # noqa: F401 - fixture's server

    addresses = queue(3000)
    workers = [
        start_command(worker_env, "send_mail", "--batch-size", "50") for _ in range(2)
    ]
    outputs = [w.communicate(timeout=180) for w in workers]

    assert [w.returncode for w in workers] == [0, 0], outputs
    sent = [int(SUMMARY.fullmatch(out).group(1)) for out, _err in outputs]
    assert sum(sent) == 3000
    assert all(n > 0 for n in sent)  # both really worked
    assert not Message.objects.exclude(status=MessageStatus.SENT).exists()
    from django.db.models import Count

    per_message = MessageLog.objects.values("message_pk").annotate(n=Count("id"))
    assert {row["n"] for row in per_message} == {1}
    assert len(addresses) == 3000


def test_loop_worker_stops_cleanly_on_sigterm(transactional_db, worker_env):
    queue(5)
    worker = start_command(
        worker_env, "send_mail", "--loop", "--idle-seconds", "0.2", "--throttle", "20"
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if Message.objects.filter(status=MessageStatus.SENT).count() == 5:
            break
        time.sleep(0.1)
    queue(200, prefix="late")
    time.sleep(1.0)
    worker.send_signal(signal.SIGTERM)
    out, err = worker.communicate(timeout=30)

    assert worker.returncode == 0, err
    assert "stopped: stop requested" in out
    # Nothing is left claimed: the rest of its batch went back to the queue.
    assert not Message.objects.filter(
        claim_token__isnull=False, status=MessageStatus.QUEUED
    ).exists()
    left = Message.objects.filter(status=MessageStatus.QUEUED).count()
    assert 0 < left < 200
    finish = run_command(worker_env, "send_mail")
    assert SUMMARY.fullmatch(finish.stdout).group(1) == str(left)
