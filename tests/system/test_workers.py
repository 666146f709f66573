"""Concurrency: several ``send_mail`` processes on one queue, started together
or overlapping like cron runs that outlast their minute. Every message goes
out exactly once, on SQLite and on PostgreSQL. Throughput is not measured
here: on a shared 2-core machine absolute rates are noise (benchmarks/
measures them properly).
"""

from __future__ import annotations

import re
import signal
import time

import pytest

from mailer.models import Message, MessageStatus
from tests.conftest import run_command
from tests.faultlib import (
    addresses,
    check_ok,
    deliveries,
    duplicates,
    every_message_sent_once,
    fill_job,
    fill_single,
    nothing_claimed,
    nothing_claimed_after_lease,
    one_sent_log_per_message,
    report,
    start,
    summary,
    wait_for_mail,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def sent_by_loop(out: str) -> int:
    """What a ``send_mail --loop`` worker sent, over all its summary lines."""
    return sum(int(n) for n in re.findall(r"^sent (\d+),", out, re.MULTILINE))


def test_four_workers_started_together_on_20000_messages(worker_env, smtp_server):
    recipients = addresses(20_000, "four")
    fill_job(recipients)

    started = time.monotonic()
    workers = [start(worker_env, "send_mail") for _ in range(4)]
    outputs = [w.communicate(timeout=600) for w in workers]
    seconds = time.monotonic() - started

    assert [w.returncode for w in workers] == [0] * 4, outputs
    sent = [summary(out)["sent"] for out, _err in outputs]
    row = report(
        "4 workers together, 20,000 job messages",
        recipients,
        smtp_server.counts,
        per_worker=sent,
        per_second=round(20_000 / seconds),
    )
    assert (row["delivered"], row["duplicates"], row["lost"]) == (20_000, 0, 0)
    assert sum(sent) == 20_000
    assert min(sent) > 0  # all four really took part
    assert every_message_sent_once()


def test_overlapping_cron_runs_share_the_queue(worker_env, smtp_server):
    """A run every half second while earlier ones still work, each limited in
    time like a cron job should be; then one last run to finish."""
    recipients = addresses(1500, "cron")
    fill_single(recipients)
    smtp_server.delay(0.001)

    runs = []
    for _ in range(5):
        runs.append(start(worker_env, "send_mail", "--max-seconds", "2"))
        time.sleep(0.4)
    outputs = [r.communicate(timeout=120) for r in runs]
    assert [r.returncode for r in runs] == [0] * 5, outputs
    assert nothing_claimed()
    last = check_ok(run_command(worker_env, "send_mail"))

    sent = [summary(out)["sent"] for out, _err in outputs]
    row = report(
        "5 overlapping cron runs, 1,500 messages",
        recipients,
        smtp_server.counts,
        per_run=sent + [last["sent"]],
    )
    assert (row["delivered"], row["duplicates"], row["lost"]) == (1500, 0, 0)
    assert sum(sent) + last["sent"] == 1500
    assert every_message_sent_once()


def test_a_batch_that_outlives_its_lease_is_not_sent_twice(worker_env, smtp_server):
    """A slow server makes a batch take longer than the lease (40 messages at
    0.1 s each against a 2 s lease). Another worker polling the queue (a
    ``--loop`` worker, or the next cron run) must not find the batch's tail
    due again while the first run is still sending it."""
    env = {**worker_env, "MAILER_TEST_LEASE_SECONDS": "2"}
    recipients = addresses(40, "overrun")
    fill_single(recipients)
    smtp_server.delay(0.1)

    slow = start(env, "send_mail", "--batch-size", "40")
    assert wait_until(lambda: smtp_server.count >= 1, 30)  # it holds all 40
    poller = start(
        env, "send_mail", "--loop", "--idle-seconds", "0.2", "--batch-size", "40"
    )
    slow_out, slow_err = slow.communicate(timeout=60)
    poller.send_signal(signal.SIGTERM)
    poller_out, poller_err = poller.communicate(timeout=30)

    assert (slow.returncode, poller.returncode) == (0, 0), (slow_err, poller_err)
    row = report(
        "batch outliving its lease, 2nd worker polling",
        recipients,
        smtp_server.counts,
        per_run=[summary(slow_out)["sent"], sent_by_loop(poller_out)],
    )
    assert (row["delivered"], row["duplicates"], row["lost"]) == (40, 0, 0)
    # It kept its batch to the end; the other found nothing to take.
    assert (summary(slow_out)["sent"], sent_by_loop(poller_out)) == (40, 0)
    assert every_message_sent_once()


# -- one worker with four connections (sending/test_pool.py) -----------------------


@pytest.mark.slow
def test_sigterm_stops_four_connections_without_loss_or_duplicates(
    worker_env, smtp_server
):
    recipients = addresses(1000, "term")
    fill_single(recipients)
    smtp_server.delay(0.005)
    worker = start(worker_env, "send_mail", "--connections", "4")
    assert wait_for_mail(smtp_server, 100, worker, timeout=60)
    assert worker.poll() is None
    worker.send_signal(signal.SIGTERM)
    out, err = worker.communicate(timeout=60)

    assert worker.returncode == 0, err
    first = summary(out)
    assert first["stopped"] == "stop requested"
    assert out.rstrip().endswith("; 4 connections")
    assert nothing_claimed()  # no lease to wait for
    rest = check_ok(run_command(worker_env, "send_mail", "--connections", "4"))

    report("SIGTERM to send_mail --connections 4", recipients, smtp_server.counts)
    delivered = deliveries(smtp_server)
    assert first["sent"] + rest["sent"] == 1000
    assert sorted(delivered) == sorted(recipients)
    assert one_sent_log_per_message()


@pytest.mark.slow
def test_a_loop_worker_with_four_connections_takes_new_mail_and_stops_cleanly(
    worker_env, smtp_server
):
    first = addresses(300, "loop-a")
    fill_single(first)
    smtp_server.delay(0.002)
    worker = start(
        worker_env, "send_mail", "--loop", "--idle-seconds", "0.2", "--connections", "4"
    )
    assert wait_for_mail(smtp_server, 300, worker, timeout=60)
    later = addresses(100, "loop-b")
    fill_single(later)  # queued while the worker idles
    assert wait_for_mail(smtp_server, 400, worker, timeout=60)
    assert worker.poll() is None
    worker.send_signal(signal.SIGTERM)
    out, err = worker.communicate(timeout=60)

    assert worker.returncode == 0, err
    assert "error" not in out
    assert sorted(deliveries(smtp_server)) == sorted(first + later)
    assert nothing_claimed()
    assert one_sent_log_per_message()


@pytest.mark.slow
def test_kill_9_of_a_worker_with_four_connections(worker_env, smtp_server):
    lease = 2
    env = {**worker_env, "MAILER_TEST_LEASE_SECONDS": str(lease)}
    recipients = addresses(2000, "k9")
    fill_single(recipients[::2])
    fill_job(recipients[1::2])
    # Latency per DATA: a kill lands with a message on the wire of each
    # connection, the case that can give the allowed duplicate per connection.
    smtp_server.delay(0.005)
    worker = start(env, "send_mail", "--connections", "4", "--batch-size", "40")
    assert wait_for_mail(smtp_server, 300, worker, timeout=60)
    assert worker.poll() is None
    worker.send_signal(signal.SIGKILL)
    worker.communicate(timeout=30)

    assert wait_until(nothing_claimed_after_lease, lease + 5, interval=0.2)
    sent_before = smtp_server.count  # the last in-flight DATA has its reply
    rest = check_ok(run_command(env, "send_mail", "--connections", "4"))

    report(
        "kill -9 of send_mail --connections 4",
        recipients,
        smtp_server.counts,
        kills=1,
        sent_before_kill=sent_before,
    )
    delivered = deliveries(smtp_server)
    assert set(delivered) == set(recipients)  # none lost
    assert duplicates(delivered) <= 4  # at most the one in flight per connection
    assert rest["sent"] == 2000 - sent_before + duplicates(delivered)
    assert not Message.all_objects.exclude(status=MessageStatus.SENT).exists()
    assert one_sent_log_per_message()
