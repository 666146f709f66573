"""Crashes: ``send_mail`` and ``process_mail_jobs`` killed with SIGKILL at
random moments, stopped with SIGTERM, and the database restarted under a
running worker. Real processes, a real SMTP server, leases shortened to a
couple of seconds so that a crashed worker's claims come back quickly.

The promise being tested: a ``kill -9`` loses nothing and re-sends at most the
one message that was on the wire (the server may have accepted it just before
the process died, unrecorded); SIGTERM loses nothing and re-sends nothing.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from django.db import connection
from django.utils import timezone

from mailer.jobs.services import RenderedEmail, create_job
from mailer.models import JobStatus, Message, MessageStatus
from tests.conftest import ROOT, run_command
from tests.faultlib import (
    addresses,
    check_ok,
    emit,
    every_message_sent_once,
    fill_job,
    fill_single,
    nothing_claimed,
    report,
    start,
    summary,
    wait_for_mail,
    wait_until,
)

# The multi-process cases are marked slow one by one; the database-failure
# cases run in-process in a second or so, in every environment.
pytestmark = pytest.mark.django_db(transaction=True)

LEASE_SECONDS = 2
#: Small batches: a worker with a 2 s lease must finish a batch well inside it.
BATCH = "40"


@pytest.fixture
def env(worker_env) -> dict[str, str]:
    return {**worker_env, "MAILER_TEST_LEASE_SECONDS": str(LEASE_SECONDS)}


def drain(env: dict[str, str]) -> dict:
    """Let every lease of a killed worker run out, then send what is left."""
    time.sleep(LEASE_SECONDS + 0.5)
    return check_ok(run_command(env, "send_mail", "--batch-size", BATCH, timeout=300))


# -- 6. kill -9 and SIGTERM during sending -------------------------------------------


@pytest.mark.slow
def test_kill_9_at_10_random_moments_loses_nothing(env, smtp_server):
    # Half single emails, half a newsletter's: both ways of building a message.
    recipients = addresses(2000, "k9-")
    fill_single(recipients[::2])
    fill_job(recipients[1::2])
    # A little latency per DATA, so that a kill often lands with a message on
    # the wire: the case that can produce the one allowed duplicate.
    smtp_server.delay(0.002)
    rng = random.Random(f"kill-9-{connection.vendor}")
    kills = 0
    for _ in range(10):
        before = smtp_server.count
        worker = start(env, "send_mail", "--batch-size", BATCH)
        # A random moment while it sends (not during Django's start-up).
        target = before + rng.randint(1, 120)
        wait_for_mail(smtp_server, target, worker, timeout=30)
        time.sleep(rng.uniform(0, 0.01))
        if worker.poll() is None:
            worker.send_signal(signal.SIGKILL)
            kills += 1
        worker.communicate(timeout=30)
    during = smtp_server.count
    rest = drain(env)

    row = report(
        "kill -9 x10 during send_mail",
        recipients,
        smtp_server.counts,
        kills=kills,
        sent_while_killing=during,
    )
    assert kills == 10
    assert row["lost"] == 0
    assert row["duplicates"] <= kills  # at most the one in flight per kill
    assert rest["sent"] == 2000 - during + row["duplicates"]
    assert not Message.all_objects.exclude(status=MessageStatus.SENT).exists()
    assert every_message_sent_once()


@pytest.mark.slow
def test_sigterm_at_random_moments_loses_nothing_and_sends_nothing_twice(
    env, smtp_server
):
    recipients = addresses(1000, "term")
    fill_single(recipients)
    smtp_server.delay(0.002)
    rng = random.Random(f"sigterm-{connection.vendor}")
    stops = []
    for _ in range(5):
        before = smtp_server.count
        worker = start(env, "send_mail", "--batch-size", BATCH)
        target = before + rng.randint(1, 100)
        wait_for_mail(smtp_server, target, worker, timeout=30)
        assert worker.poll() is None
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=30)
        # It finishes the message on the wire, records it, gives the rest of
        # its batch back, prints its summary and exits 0.
        assert worker.returncode == 0, err
        assert summary(out)["stopped"] == "stop requested"
        stops.append(summary(out)["sent"])
        assert nothing_claimed()
    # No lease to wait for: the next run starts at once.
    rest = check_ok(run_command(env, "send_mail"))

    row = report(
        "SIGTERM x5 during send_mail", recipients, smtp_server.counts, stops=len(stops)
    )
    assert sum(stops) + rest["sent"] == 1000
    assert (row["lost"], row["duplicates"]) == (0, 0)
    assert every_message_sent_once()


@pytest.mark.slow
def test_sigterm_stops_a_loop_worker_cleanly(env, smtp_server):
    recipients = addresses(400, "loop")
    fill_single(recipients)
    smtp_server.delay(0.002)
    worker = start(
        env, "send_mail", "--loop", "--idle-seconds", "0.2", "--batch-size", BATCH
    )
    assert wait_until(lambda: smtp_server.count >= 150, 60)
    worker.send_signal(signal.SIGTERM)
    out, err = worker.communicate(timeout=30)

    assert worker.returncode == 0, err
    assert "stopped: stop requested" in out
    assert nothing_claimed()
    check_ok(run_command(env, "send_mail"))
    row = report("SIGTERM to send_mail --loop", recipients, smtp_server.counts)
    assert (row["lost"], row["duplicates"]) == (0, 0)


@pytest.mark.slow
def test_kill_9_of_one_of_four_workers_is_absorbed_by_the_others(env, smtp_server):
    recipients = addresses(2000, "one4")
    fill_single(recipients)
    smtp_server.delay(0.001)
    workers = [start(env, "send_mail", "--batch-size", BATCH) for _ in range(4)]
    assert wait_until(lambda: smtp_server.count >= 500, 60)
    victim = random.Random(f"victim-{connection.vendor}").randrange(4)
    workers[victim].send_signal(signal.SIGKILL)
    results = [w.communicate(timeout=300) for w in workers]
    survivors = [w for i, w in enumerate(workers) if i != victim]
    assert [w.returncode for w in survivors] == [0, 0, 0], results
    drain(env)  # the victim's batch, after its lease

    row = report("kill -9 of 1 of 4 workers", recipients, smtp_server.counts, kills=1)
    assert row["lost"] == 0
    assert row["duplicates"] <= 1
    assert not Message.all_objects.exclude(status=MessageStatus.SENT).exists()


# -- 7. kill -9 during process_mail_jobs ---------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "stop", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "term"]
)
def test_killed_expansion_leaves_exactly_one_message_per_recipient(env, stop):
    total = 20_000
    readers = addresses(total, "exp")
    # Duplicates in other case across the list: must still be queued once.
    listed = readers + [a.upper() for a in readers[::1000]]
    job = create_job(
        content=RenderedEmail(subject="News", body_text="Hello [[mj:email]]"),
        recipients=listed,
    )
    rng = random.Random(f"expand-{stop}-{connection.vendor}")
    interrupted = 0
    for _ in range(4):
        rows_before = Message.all_objects.count()
        if rows_before >= total - 2000:
            break
        expander = start(env, "process_mail_jobs", "--chunk-size", "100")
        target = rows_before + rng.randint(100, 4000)
        wait_until(
            lambda target=target, expander=expander: (
                Message.all_objects.count() >= target or expander.poll() is not None
            ),
            60,
            interval=0.005,
        )
        if expander.poll() is None:
            expander.send_signal(stop)
            interrupted += 1
        out, err = expander.communicate(timeout=30)
        if stop == signal.SIGTERM:
            assert expander.returncode == 0, err
    done = run_command(env, "process_mail_jobs")
    assert done.returncode == 0, done.stderr

    job.refresh_from_db()
    per_address = Counter(
        a.lower()
        for a in Message.all_objects.filter(job=job).values_list(
            "to_address", flat=True
        )
    )
    emit(
        f"{signal.Signals(stop).name} x{interrupted} in process_mail_jobs (rows)",
        delivered=len(per_address),
        duplicates=sum(per_address.values()) - len(per_address),
        lost=total - len(per_address),
    )
    assert interrupted >= 3
    assert (job.status, job.expanded_count, job.recipient_count) == (
        JobStatus.QUEUED,
        total,
        total,
    )
    assert set(per_address) == set(readers)
    assert set(per_address.values()) == {1}


# -- 9. database trouble --------------------------------------------------------------


def test_a_broken_database_connection_while_recording_is_retried(
    mailserver, monkeypatch
):
    """The email is out; its outcome must not be lost to a dropped database
    connection (it would be sent again after the lease). Two failed writes,
    then the database is back: each message recorded once, none re-sent."""
    from django.db import OperationalError

    from mailer.sending import engine
    from mailer.sending.records import OutcomeWriter

    monkeypatch.setattr(engine, "RECORD_RETRY_DELAYS", (0.01, 0.01, 0.01))
    write = OutcomeWriter.write
    failures = iter([True, True])

    def flaky_write(self, **values):
        if next(failures, False):
            raise OperationalError(
                "terminating connection due to administrator command"
            )
        return write(self, **values)

    monkeypatch.setattr(OutcomeWriter, "write", flaky_write)
    recipients = addresses(30, "flaky")
    fill_single(recipients)

    result = engine.send_queued()

    row = report(
        "database write fails twice, then works", recipients, mailserver.counts
    )
    assert (result.sent, result.error) == (30, None)
    assert (row["delivered"], row["duplicates"], row["lost"]) == (30, 0, 0)
    assert every_message_sent_once()


def test_a_database_that_stays_away_stops_the_run_with_one_line(
    mailserver, monkeypatch
):
    """Where no retry helps (the claim itself fails), the run stops with one
    line for cron and a non-zero exit, like for a mail server that is down."""
    from io import StringIO

    from django.core.management import CommandError, call_command
    from django.db import OperationalError

    from mailer.sending import engine

    def no_database(size):
        raise OperationalError("connection to server failed: refused\n\tIs it up?")

    monkeypatch.setattr(engine, "claim_batch", no_database)
    result = engine.send_queued()
    assert (result.stop_reason, result.error) == (
        "database error",
        "database error: connection to server failed: refused",
    )
    out = StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("send_mail", stdout=out)
    assert raised.value.returncode == 2
    assert str(raised.value) == result.error
    assert out.getvalue().endswith(
        "stopped: database error; error: " + result.error + "\n"
    )


@pytest.mark.slow
@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="restarting the database server is a PostgreSQL case (SQLite has none)",
)
def test_postgresql_restarted_mid_run(smtp_server):
    """On a PostgreSQL server of its own, so the restart cannot disturb the
    suite's database: the worker loses its connection mid-run, and either
    recovers or exits with a one-line error; the next run delivers the rest,
    nothing lost, at most the one in-flight message twice."""
    from tests.postgres import TemporaryPostgres

    total = 800
    with TemporaryPostgres() as pg:
        pg_env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "PYTHONPATH": str(ROOT),
            "DATABASE_URL": pg.url,
            "MAILER_TEST_SMTP_PORT": str(smtp_server.port),
            "MAILER_TEST_LEASE_SECONDS": str(LEASE_SECONDS),
        }
        pg_env.pop("MAILER_TEST_DB_NAME", None)

        def manage(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run(
                [sys.executable, "-m", "django", *args],
                env=pg_env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=120,
            )

        assert manage("migrate", "-v0").returncode == 0
        queued = manage(
            "shell",
            "-v0",
            "-c",
            "import mailer; mailer.send_mass_mail("
            "[('News', 'Body', 'n@example.com', [f'pg{i:05d}@example.com'])"
            f" for i in range({total})])",
        )
        assert queued.returncode == 0, queued.stderr
        smtp_server.delay(0.002)
        worker = subprocess.Popen(
            [sys.executable, "-m", "django", "send_mail", "--batch-size", BATCH],
            env=pg_env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert wait_until(lambda: smtp_server.count >= 200, 60)
        pg.restart()
        out, err = worker.communicate(timeout=120)
        first_run = smtp_server.count
        time.sleep(LEASE_SECONDS + 0.5)
        again = manage("send_mail")
        left = manage(
            "shell",
            "-v0",
            "-c",
            "from mailer.models import Message; "
            "print(Message.all_objects.exclude(status=2).count())",
        )

    recipients = [f"pg{i:05d}@example.com" for i in range(total)]
    row = report(
        "PostgreSQL restarted mid-run",
        recipients,
        smtp_server.counts,
        database="postgresql",
        first_exit=worker.returncode,
        first_run=first_run,
    )
    if worker.returncode != 0:
        # A clear, one-line error (no traceback), and a non-zero exit for cron.
        assert worker.returncode == 2, err
        assert err.count("\n") == 1, err
        assert err.startswith("CommandError: database error: "), err
    assert again.returncode == 0, again.stderr
    assert left.stdout.strip() == "0"
    assert row["lost"] == 0
    assert row["duplicates"] <= 1


@pytest.mark.slow
def test_claims_of_a_killed_worker_wait_for_their_lease(worker_env, smtp_server):
    """The other half of the rule: nobody takes a live claim. Right after a
    kill, a new run leaves the dead worker's batch alone; once the lease has
    run out, the next run sends it."""
    # Long enough for a second run (Django start-up included) to finish
    # inside it on a loaded 2-core machine.
    lease = 8
    env = {**worker_env, "MAILER_TEST_LEASE_SECONDS": str(lease)}
    recipients = addresses(200, "lease")
    fill_single(recipients)
    smtp_server.delay(0.01)
    worker = start(env, "send_mail", "--batch-size", "100")
    assert wait_until(lambda: smtp_server.count >= 10, 30)
    worker.send_signal(signal.SIGKILL)
    worker.communicate(timeout=30)
    killed_at = time.monotonic()
    held = set(
        Message.all_objects.pending()
        .filter(claim_token__isnull=False, due_at__gt=timezone.now())
        .values_list("id", flat=True)
    )
    assert 0 < len(held) <= 100

    smtp_server.delay(0)
    check_ok(run_command(env, "send_mail"))
    assert time.monotonic() - killed_at < lease  # still inside the lease
    assert set(Message.all_objects.pending().values_list("id", flat=True)) == held

    time.sleep(max(0.0, lease + 0.5 - (time.monotonic() - killed_at)))
    check_ok(run_command(env, "send_mail"))
    row = report("kill -9, rerun inside the lease", recipients, smtp_server.counts)
    assert (row["lost"], row["duplicates"] <= 1) == (0, True)
    assert not Message.all_objects.exclude(status=MessageStatus.SENT).exists()
