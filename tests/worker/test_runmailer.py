"""The worker loop in this process (how long it waits, what it sends in one
drain) and ``mailer_status`` as a health check. (``runmailer``,
``runmailer_pg`` and ``send_mail --loop`` as real processes:
tests/system/test_long_running_workers.py.)"""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

import mailer
from mailer.worker import health
from tests.worker.helpers import confirm_job, queue_reset


@pytest.fixture(autouse=True)
def forget_written_state():
    health.forget_written()
    yield
    health.forget_written()


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


@pytest.mark.django_db
def test_a_send_only_poller_ignores_jobs_waiting_for_expansion():
    from mailer.worker.wakeup import work_waiting

    confirm_job(2)
    assert work_waiting() is True
    assert work_waiting(jobs=False) is False
