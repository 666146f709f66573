"""The cron commands, with their exact output and exit status: ``send_mail``,
``retry_deferred`` and ``purge_mail_log``."""

from __future__ import annotations

import re
import signal
import time
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

import mailer
from mailer.models import DontSendEntry, LogResult, Message, MessageLog, MessageStatus
from tests.conftest import run_command, start_command

pytestmark = pytest.mark.django_db


def summary(
    sent=r"\d+", deferred="0", failed="0", suppressed="0", stopped="queue empty"
):
    """The one line ``send_mail`` prints, with the counts that must match."""
    return re.compile(
        rf"sent {sent}, deferred {deferred}, failed {failed}, "
        rf"suppressed {suppressed} in \d+\.\d\ds \(\d+\.\d/s\); stopped: {stopped}\n"
    )


def command(name: str, *args: str) -> str:
    out = StringIO()
    call_command(name, *args, stdout=out)
    return out.getvalue()


def queue(n: int, *, prefix: str = "r") -> list[str]:
    addresses = [f"{prefix}{i}@example.com" for i in range(n)]
    mailer.send_mass_mail(
        [(f"Hello {a}", "Body", "news@example.com", [a]) for a in addresses]
    )
    return addresses


# -- send_mail -----------------------------------------------------------------


def test_send_mail_prints_exactly_one_summary_line(mailserver):
    queue(3)
    out = command("send_mail")
    assert summary(sent="3").fullmatch(out), out
    assert mailserver.count == 3


def test_send_mail_on_an_empty_queue_says_so_and_connects_nowhere(mailserver):
    out = command("send_mail")
    assert summary(sent="0").fullmatch(out), out
    assert mailserver.connections == 0


def test_the_summary_counts_every_outcome(mailserver):
    queue(4)
    mailserver.defer(["r1@example.com"])
    mailserver.reject(["r2@example.com"])
    DontSendEntry.objects.create(address="r3@example.com")

    out = command("send_mail")

    assert summary(sent="1", deferred="1", failed="1", suppressed="1").fullmatch(out)


def test_max_messages_and_batch_size_options(mailserver, settings):
    queue(12)

    out = command("send_mail", "--max-messages", "7", "--batch-size", "3")
    assert summary(sent="7", stopped="message limit").fullmatch(out), out

    settings.MAILER_EMAIL_MAX_BATCH = 4  # the default for --max-messages
    out = command("send_mail")
    assert summary(sent="4", stopped="message limit").fullmatch(out), out
    assert mailserver.count == 11


def test_max_seconds_option(mailserver):
    queue(30)
    mailserver.delay(0.2)

    out = command("send_mail", "--max-seconds", "0.5")

    assert summary(stopped="time limit").fullmatch(out), out
    sent = int(out.split()[1].rstrip(","))
    assert 1 <= sent <= 5
    assert Message.all_objects.filter(status=MessageStatus.QUEUED).count() == 30 - sent


def test_throttle_option(mailserver):
    queue(5)
    started = time.monotonic()
    out = command("send_mail", "--throttle", "20")
    assert summary(sent="5").fullmatch(out), out
    assert time.monotonic() - started >= 4 / 20


@pytest.mark.parametrize(
    "option, value",
    [
        ("--max-messages", "0"),
        ("--max-seconds", "0.0"),
        ("--throttle", "-1.0"),
        ("--batch-size", "-3"),
    ],
)
def test_limits_must_be_positive(option, value):
    with pytest.raises(CommandError) as raised:
        command("send_mail", option, value)
    assert str(raised.value) == f"{option} must be positive, not {value}"


def test_send_mail_exits_non_zero_with_a_one_line_reason_when_the_server_is_down(
    transactional_db, smtp_server, worker_env
):
    queue(3)
    smtp_server.stop()

    done = run_command(worker_env, "send_mail")

    # ECONNREFUSED is 111 on Linux, 61 on macOS.
    reason = r"cannot connect to 127\.0\.0\.1:\d+: \[Errno \d+\] Connection refused"
    assert done.returncode == 2
    assert re.fullmatch(f"CommandError: {reason}\n", done.stderr), done.stderr
    assert summary(
        sent="0", stopped=f"mail server unreachable; error: {reason}"
    ).fullmatch(done.stdout), done.stdout
    assert set(Message.all_objects.values_list("attempts", flat=True)) == {0}
    assert not Message.all_objects.filter(claim_token__isnull=False).exists()

    smtp_server.start()
    done = run_command(worker_env, "send_mail")
    assert (done.returncode, done.stderr) == (0, "")
    assert summary(sent="3").fullmatch(done.stdout), done.stdout


def test_a_loop_worker_sends_new_mail_and_stops_cleanly_on_sigterm(
    transactional_db, smtp_server, worker_env
):
    queue(5)
    worker = start_command(worker_env, "send_mail", "--loop", "--idle-seconds", "0.2")
    try:
        assert smtp_server.wait_for(5, timeout=60)
        time.sleep(1)  # idle by now: the queue has been empty for a while
        queue(3, prefix="later")
        assert smtp_server.wait_for(8, timeout=30)
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=30)
    finally:
        worker.kill()
        worker.wait()

    assert (worker.returncode, err) == (0, "")
    # One summary line per run that sent something; idle runs print nothing.
    # (SIGTERM may end the last run before it sees the queue empty again.)
    lines = out.splitlines(keepends=True)
    line = summary(stopped="(queue empty|stop requested)")
    assert all(line.fullmatch(each) for each in lines), out
    assert sum(int(each.split()[1].rstrip(",")) for each in lines) == 8
    assert len(lines) == 2, out
    assert set(smtp_server.counts.values()) == {1}


def test_sigterm_mid_batch_finishes_the_message_in_flight_and_gives_back_the_rest(
    transactional_db, smtp_server, worker_env
):
    addresses = queue(100)
    worker = start_command(worker_env, "send_mail", "--loop", "--throttle", "20")
    try:
        assert smtp_server.wait_for(10, timeout=60)
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=30)
    finally:
        worker.kill()
        worker.wait()

    assert (worker.returncode, err) == (0, "")
    assert summary(stopped="stop requested").fullmatch(out), out
    sent = Message.all_objects.filter(status=MessageStatus.SENT).count()
    assert int(out.split()[1].rstrip(",")) == sent == smtp_server.count < 100
    assert not Message.all_objects.filter(claim_token__isnull=False).exists()

    done = run_command(worker_env, "send_mail")
    assert summary(sent=str(100 - sent)).fullmatch(done.stdout), done.stdout
    assert sorted(smtp_server.counts) == sorted(addresses)
    assert set(smtp_server.counts.values()) == {1}


# -- retry_deferred ---------------------------------------------------------------


def test_retry_deferred_makes_deferred_and_held_mail_due(mailserver):
    queue(2)
    mailer.send_mail("Held", "b", "a@example.com", ["held@example.com"], "deferred")
    mailserver.defer(["r0@example.com"], times=1)
    command("send_mail")

    assert command("retry_deferred") == "2 deferred message(s) queued again\n"
    assert summary(sent="2").fullmatch(command("send_mail"))
    assert command("retry_deferred") == "0 deferred message(s) queued again\n"


# -- purge_mail_log ---------------------------------------------------------------


@pytest.fixture
def history():
    now = timezone.now()
    for days, result in [
        (40, LogResult.SENT),
        (40, LogResult.FAILED),
        (35, LogResult.SENT),
        (10, LogResult.SENT),
        (10, LogResult.FAILED),
    ]:
        MessageLog.objects.create(
            recipient=f"{days}-{result}@example.com",
            result=result,
            created_at=now - timedelta(days=days),
        )


def remaining() -> list[str]:
    return sorted(MessageLog.objects.values_list("recipient", flat=True))


def test_purge_mail_log_deletes_successes_older_than_days(history):
    """django-mailer's default: only successful deliveries go."""
    assert command("purge_mail_log", "30") == "2 log entries deleted\n"
    assert remaining() == ["10-1@example.com", "10-3@example.com", "40-3@example.com"]
    assert command("purge_mail_log", "30") == "0 log entries deleted\n"


def test_purge_mail_log_can_keep_to_one_result(history):
    assert command("purge_mail_log", "30", "--result", "failed") == (
        "1 log entry deleted\n"
    )
    assert remaining() == [
        "10-1@example.com",
        "10-3@example.com",
        "35-1@example.com",
        "40-1@example.com",
    ]
    assert command("purge_mail_log", "0", "-r", "SENT") == "3 log entries deleted\n"
    assert remaining() == ["10-3@example.com"]


def test_purge_mail_log_refuses_nonsense(history):
    with pytest.raises(CommandError, match="invalid choice: 'vanished'"):
        command("purge_mail_log", "30", "--result", "vanished")
    with pytest.raises(CommandError, match="^DAYS must be zero or more$"):
        command("purge_mail_log", "-1")
    assert len(remaining()) == 5
