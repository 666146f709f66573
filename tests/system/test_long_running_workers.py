"""Long-running workers as real processes against the real SMTP server:
``runmailer`` and ``runmailer_pg`` woken by new mail (LISTEN/NOTIFY on
PostgreSQL, also after the listening connection is cut), stopped by SIGTERM
without losing the rest of the queue; ``send_mail --loop`` woken before its
idle sleep ends; django-tasks-db's ``db_worker`` running the mailer's tasks.
(The worker loop in this process: tests/worker/.)"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable

import pytest
from django.db import connection, transaction

from mailer.models import WorkerState
from tests.conftest import start_command
from tests.worker.helpers import confirm_job, queue, queue_reset

on_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="LISTEN/NOTIFY is PostgreSQL's"
)

#: Longer than any bounded wait below: mail that arrives was woken for, not
#: picked up by the idle sleep.
IDLE = "600"


def wait_until(condition: Callable[[], bool], timeout: float = 60) -> bool:
    """Poll ``condition`` every 0.05 s until true, ``timeout`` seconds at
    most; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


def idle_worker(env: dict[str, str], *args: str) -> subprocess.Popen:
    """Start a worker and wait until it has drained once (it records the
    run), so what is queued next must wake it."""
    worker = start_command(env, *args, "--idle-seconds", IDLE)
    if not wait_until(lambda: WorkerState.objects.filter(key="run:last").exists()):
        worker.kill()
        out, err = worker.communicate(timeout=30)
        pytest.fail(f"the worker never ran: {out}{err}")
    return worker


def stop(worker: subprocess.Popen) -> tuple[int, str, str]:
    """SIGTERM ``worker`` and wait for it (30 s at most, then kill it);
    returns its exit code, stdout and stderr."""
    worker.send_signal(signal.SIGTERM)
    try:
        out, err = worker.communicate(timeout=30)
    finally:
        worker.kill()
        worker.wait()
    return worker.returncode, out, err


def listener_pids() -> list[int]:
    """PostgreSQL backend pids of the other connections that LISTEN for mail."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE query = 'LISTEN mailer' "
            "AND pid <> pg_backend_pid()"
        )
        return [row[0] for row in cursor.fetchall()]


# -- the workers ---------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("command", ["runmailer", "runmailer_pg"])
def test_a_worker_delivers_single_mail_and_a_job_and_stops_on_sigterm(
    command, transactional_db, smtp_server, worker_env
):
    if command == "runmailer_pg" and connection.vendor != "postgresql":
        pytest.skip("runmailer_pg needs PostgreSQL")
    worker = idle_worker(worker_env, command)
    try:
        queue_reset()
        assert smtp_server.wait_for(1, timeout=60)
        addresses = confirm_job(3)
        assert smtp_server.wait_for(4, timeout=60)
    finally:
        returncode, out, err = stop(worker)

    assert (returncode, err) == (0, ""), out
    assert out.startswith("Mail worker started (")
    assert "Mail worker stopped: 4 sent in " in out
    assert sorted(smtp_server.counts) == sorted(["reader@example.com", *addresses])
    assert set(smtp_server.counts.values()) == {1}
    subjects = [m.message["Subject"] for m in smtp_server.messages]
    assert subjects == ["Reset your password", "Issue 7", "Issue 7", "Issue 7"]


@pytest.mark.slow
@on_postgres
def test_runmailer_pg_delivers_after_its_listen_connection_is_cut(
    transactional_db, smtp_server, worker_env
):
    worker = idle_worker(worker_env, "runmailer_pg")
    try:
        assert wait_until(lambda: len(listener_pids()) == 1)
        [first] = listener_pids()
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [first])
        # Committed while the worker may still be disconnected: its
        # notification reaches nobody, the drain after reconnecting finds it.
        queue_reset()
        assert smtp_server.wait_for(1, timeout=60)
        assert wait_until(lambda: len(listener_pids()) == 1)
        assert listener_pids() != [first]
        queue_reset("second@example.com")
        assert smtp_server.wait_for(2, timeout=60)
    finally:
        returncode, out, err = stop(worker)
    assert returncode == 0, out + err
    assert sorted(smtp_server.counts) == ["reader@example.com", "second@example.com"]


@pytest.mark.slow
@on_postgres
def test_runmailer_pg_sends_nothing_for_a_rolled_back_transaction(
    transactional_db, smtp_server, worker_env
):
    worker = idle_worker(worker_env, "runmailer_pg")
    try:
        with pytest.raises(RuntimeError), transaction.atomic():
            queue_reset("rolled-back@example.com")
            raise RuntimeError("the view failed")
        queue_reset("committed@example.com")
        assert smtp_server.wait_for(1, timeout=60)
    finally:
        returncode, out, err = stop(worker)
    assert returncode == 0, out + err
    assert list(smtp_server.counts) == ["committed@example.com"]


@pytest.mark.slow
def test_sigterm_finishes_the_message_in_flight_and_gives_back_the_rest(
    transactional_db, smtp_server, worker_env
):
    from mailer.models import Message, MessageStatus

    for i in range(60):
        queue_reset(f"r{i}@example.com")
    worker = start_command(worker_env, "runmailer", "--throttle", "20")
    try:
        assert smtp_server.wait_for(5, timeout=60)
    finally:
        returncode, out, err = stop(worker)

    assert (returncode, err) == (0, ""), out
    assert "stopped: stop requested" in out
    sent = Message.all_objects.filter(status=MessageStatus.SENT).count()
    assert sent == smtp_server.count < 60
    assert f"Mail worker stopped: {sent} sent in " in out
    assert not Message.all_objects.filter(claim_token__isnull=False).exists()


@pytest.mark.slow
def test_send_mail_loop_is_woken_by_new_mail_before_its_idle_sleep_ends(
    transactional_db, smtp_server, worker_env
):
    worker = start_command(worker_env, "send_mail", "--loop", "--idle-seconds", IDLE)
    try:
        assert wait_until(lambda: WorkerState.objects.filter(key="run:last").exists())
        queue_reset()
        assert smtp_server.wait_for(1, timeout=60)
    finally:
        returncode, out, err = stop(worker)
    assert (returncode, err) == (0, ""), out


# -- a real db_worker ----------------------------------------------------------


@pytest.fixture
def db_worker(transactional_db, worker_env, use_tasks):
    """django-tasks-db's ``db_worker`` as a process, polling every 0.1 s,
    stopped with SIGTERM after the test."""
    pytest.importorskip("django_tasks_db")
    env = {**worker_env, "MAILER_TEST_USE_TASKS": "1"}
    worker = start_command(
        env, "db_worker", "--interval", "0.1", "--no-startup-delay", "--no-reload"
    )
    yield worker
    stop(worker)


@pytest.mark.slow
def test_db_worker_delivers_single_mail_and_a_job(db_worker, smtp_server):
    queue()
    assert smtp_server.wait_for(1, timeout=60)
    addresses = confirm_job(4)
    assert smtp_server.wait_for(5, timeout=60)
    assert sorted(smtp_server.counts) == sorted(["reader@example.com", *addresses])
    assert set(smtp_server.counts.values()) == {1}
    assert db_worker.poll() is None
