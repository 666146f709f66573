"""``runmailer`` and ``runmailer_pg`` as real processes against the real SMTP
server, and ``mailer_status`` as a health check."""

from __future__ import annotations

import json
import signal
import time
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction

import mailer
from mailer.jobs.services import RenderedEmail, create_job
from mailer.models import WorkerState
from mailer.worker import health
from tests.conftest import start_command

on_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="LISTEN/NOTIFY is PostgreSQL's"
)

#: Longer than any bounded wait below: mail that arrives was woken for, not
#: picked up by the idle sleep.
IDLE = "600"


@pytest.fixture(autouse=True)
def forget_written_state():
    health.forget_written()
    yield
    health.forget_written()


def wait_until(condition, timeout: float = 60) -> bool:
    """Poll ``condition`` (bounded) until true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


def idle_worker(env, *args: str):
    """Start a worker and wait until it has drained once (it records the
    run), so what is queued next must wake it."""
    worker = start_command(env, *args, "--idle-seconds", IDLE)
    if not wait_until(lambda: WorkerState.objects.filter(key="run:last").exists()):
        worker.kill()
        out, err = worker.communicate(timeout=30)
        pytest.fail(f"the worker never ran: {out}{err}")
    return worker


def stop(worker) -> tuple[int, str, str]:
    worker.send_signal(signal.SIGTERM)
    try:
        out, err = worker.communicate(timeout=30)
    finally:
        worker.kill()
        worker.wait()
    return worker.returncode, out, err


def queue_reset(address: str = "reader@example.com") -> None:
    mailer.send_mail(
        "Reset your password", "Body", "news@example.com", [address], priority="high"
    )


def confirm_job(n: int) -> list[str]:
    addresses = [f"reader{i}@example.com" for i in range(n)]
    create_job(
        content=RenderedEmail(subject="Issue 7", body_text="Hello {{ name }}"),
        recipients=addresses,
    )
    return addresses


def listener_pids() -> list[int]:
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


# -- mailer_status as a health check -------------------------------------------


def status(*args: str) -> str:
    out = StringIO()
    call_command("mailer_status", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_status_json_on_a_healthy_queue(mailserver):
    queue_reset()
    call_command("send_mail", stdout=StringIO())

    report = json.loads(status("--json", "--max-age", "60"))

    assert report["healthy"] is True
    assert report["problems"] == []
    assert report["oldest_due_age_seconds"] is None
    assert report["queue"] == [{"priority": "high", "status": "sent", "count": 1}]
    run = report["last_run"]
    assert (run["ok"], run["sent"], run["error"]) == (True, 1, None)
    assert run["relay"] == f"127.0.0.1:{mailserver.port}"
    assert run["stop_reason"] == "queue empty"


@pytest.mark.django_db
def test_status_fails_when_the_oldest_due_message_is_older_than_max_age(settings):
    queue_reset()
    mailer.models.Message.all_objects.update(
        due_at=mailer.models.timezone.now() - mailer.models.timezone.timedelta(hours=1)
    )

    assert json.loads(status("--json", "--max-age", "7200"))["healthy"] is True
    with pytest.raises(CommandError, match=r"waited 3\d{3}s \(over 60s\)") as error:
        status("--json", "--max-age", "60")
    assert error.value.returncode == 2


@pytest.mark.django_db
def test_status_fails_while_the_last_run_could_not_reach_the_relay(mailserver):
    queue_reset()
    mailserver.stop()
    with pytest.raises(CommandError):
        call_command("send_mail", stdout=StringIO())

    with pytest.raises(CommandError) as error:
        status()
    assert error.value.returncode == 2
    assert f"could not reach the relay 127.0.0.1:{mailserver.port}" in str(error.value)

    mailserver.start()
    call_command("send_mail", stdout=StringIO())
    assert "Last run:" in status()
    assert json.loads(status("--json"))["healthy"] is True


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


# -- how long an idle worker waits (in-process) -------------------------------------


@pytest.fixture
def lines() -> list[str]:
    return []


@pytest.mark.django_db
def test_an_idle_worker_waits_mailer_empty_queue_sleep(settings, lines):
    from mailer.worker.loop import Worker

    settings.MAILER_EMPTY_QUEUE_SLEEP = 7
    assert Worker(listen=False, write=lines.append).drain() == 7
    settings.MAILER_EMPTY_QUEUE_SLEEP = 30
    assert Worker(listen=False, write=lines.append).drain() == 30
    assert Worker(listen=False, idle_seconds=3, write=lines.append).drain() == 3
    assert lines == []  # idle runs print nothing


@pytest.mark.django_db
def test_a_worker_wakes_for_the_retry_of_deferred_mail(settings, mailserver, lines):
    from datetime import timedelta

    from django.utils import timezone

    from mailer.models import Message
    from mailer.worker.loop import Worker

    settings.MAILER_EMPTY_QUEUE_SLEEP = 600
    queue_reset()
    Message.all_objects.update(due_at=timezone.now() + timedelta(seconds=30))
    pause = Worker(listen=False, write=lines.append).drain()
    assert 20 < pause <= 30


@pytest.mark.django_db
def test_a_worker_that_cannot_reach_the_relay_pauses_and_says_so(
    settings, mailserver, lines
):
    from mailer.worker.loop import Worker

    settings.MAILER_EMPTY_QUEUE_SLEEP = 9
    queue_reset()
    mailserver.stop()
    worker = Worker(listen=False, write=lines.append)
    assert worker.drain() == 9  # not at once: the mail is due, the relay down
    [line] = lines
    assert "stopped: mail server unreachable" in line
    assert worker.stats.errors == 1


@pytest.mark.django_db
def test_a_worker_expands_and_sends_a_confirmed_job_in_one_run(mailserver, lines):
    from mailer.worker.loop import Worker

    addresses = confirm_job(3)
    Worker(listen=False, write=lines.append).drain()
    assert sorted(mailserver.counts) == addresses
    assert lines[0].startswith("expanded 1 job(s): 3 message(s) queued")
    assert lines[1].startswith("sent 3, deferred 0, failed 0")


@pytest.mark.django_db
def test_a_workers_job_is_done_when_its_last_message_is_recorded(mailserver, lines):
    from mailer.models import JobStatus, MessageJob
    from mailer.worker.loop import Worker

    confirm_job(3)
    Worker(listen=False, write=lines.append).drain()
    # Done within this drain, not at the next drain's expansion pass.
    job = MessageJob.objects.get()
    assert (job.status, job.finished_at is not None) == (JobStatus.DONE, True)


@pytest.mark.django_db
def test_runmailer_refuses_a_nonpositive_idle_time():
    with pytest.raises(CommandError, match="--idle-seconds must be positive"):
        call_command("runmailer", "--idle-seconds", "0")


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


@pytest.mark.django_db
def test_a_send_only_poller_ignores_jobs_waiting_for_expansion():
    from mailer.worker.wakeup import work_waiting

    confirm_job(2)
    assert work_waiting() is True
    assert work_waiting(jobs=False) is False
