"""django-chroniker integration: commands run by chroniker report progress."""

from __future__ import annotations

import gc
import time
import warnings

import pytest
from django.utils import timezone

import mailer
from mailer.jobs.services import RenderedEmail, create_job


class ShortSleeps:
    """``time`` for chroniker's models: its heartbeat thread sleeps 5 s
    between beats (hard-coded) and ``Job.handle_run`` waits for the thread to
    end, so every run would last at least 5 s. Here a beat comes every 0.1 s."""

    def __getattr__(self, name):
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(min(seconds, 0.1))


@pytest.fixture
def chroniker_job(transactional_db, monkeypatch):
    import chroniker.models
    from chroniker.models import Job

    monkeypatch.setattr(chroniker.models, "time", ShortSleeps())

    def make(command: str, args: str = "") -> Job:
        return Job.objects.create(
            name=command,
            command=command,
            args=args,
            frequency="MINUTELY",
            next_run=timezone.now(),
        )

    yield make
    # chroniker's heartbeat thread opens a database connection of its own and
    # ends without closing it; Python 3.13 warns when such a connection is
    # collected. Collect it here, where we know whose it is.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.fixture
def progress_reports(monkeypatch) -> list[tuple[int, int]]:
    """What chroniker's heartbeat was told, as (total, complete). (At the end
    of a run chroniker itself rewrites ``total_parts_complete`` from the
    previous run's success, so the row alone can't show what was reported.)"""
    from chroniker.models import JobHeartbeatThread

    reports: list[tuple[int, int]] = []
    original = JobHeartbeatThread.update_progress

    def recording(self, total_parts, total_parts_complete, lock=True):
        reports.append((total_parts, total_parts_complete))
        return original(self, total_parts, total_parts_complete, lock=lock)

    monkeypatch.setattr(JobHeartbeatThread, "update_progress", recording)
    return reports


def test_send_mail_reports_its_progress_to_chroniker(
    chroniker_job, progress_reports, mailserver, settings
):
    settings.MAILER_BATCH_SIZE = 2
    for i in range(5):
        mailer.send_mail("Hi", "Body", "news@example.com", [f"r{i}@example.com"])
    job = chroniker_job("send_mail")

    job.handle_run()

    job.refresh_from_db()
    assert mailserver.count == 5
    assert progress_reports == [(5, 2), (5, 4), (5, 5)]
    assert job.total_parts == 5
    assert job.last_run_successful


def test_send_mail_progress_counts_only_what_the_run_may_send(
    chroniker_job, progress_reports, mailserver, settings
):
    settings.MAILER_BATCH_SIZE = 2
    for i in range(5):
        mailer.send_mail("Hi", "Body", "news@example.com", [f"r{i}@example.com"])
    # chroniker splits args on spaces: "--opt value", not "--opt=value".
    job = chroniker_job("send_mail", "--max-messages 3")

    job.handle_run()

    assert mailserver.count == 3
    assert progress_reports == [(3, 2), (3, 3)]


def test_process_mail_jobs_reports_its_progress_to_chroniker(
    chroniker_job, progress_reports, settings
):
    settings.MAILER_EXPAND_CHUNK_SIZE = 3
    create_job(
        content=RenderedEmail(subject="Hi", body_text="Hello"),
        recipients=[f"r{i}@example.com" for i in range(7)],
    )
    job = chroniker_job("process_mail_jobs")

    job.handle_run()

    assert progress_reports == [(7, 3), (7, 6), (7, 7)]
    job.refresh_from_db()
    assert job.last_run_successful


def test_without_chroniker_running_progress_is_a_no_op(db, progress_reports):
    from mailer.jobs.progress import report_progress

    report_progress(3, 10)  # run by hand or cron: no chroniker job in this thread
    assert progress_reports == []
