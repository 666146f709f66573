"""What a send run reports as it goes: progress to django-chroniker, when a
command runs under it, and jobs done the moment their last message is
resolved (:class:`JobFinisher`).

chroniker (the maintained Python 3 fork of django-chronograph) runs management
commands in-process and keeps the running job in a thread-local;
``Job.update_progress`` updates it, and does nothing when the command was run
by hand or from crontab. Without chroniker installed this is a no-op.
"""

from __future__ import annotations

import logging
import time

from django.apps import apps
from django.db import DatabaseError

__all__ = ["JobFinisher", "SendProgress", "report_progress", "reporting"]

__all__ = ["SendProgress", "report_progress"]

logger = logging.getLogger("mailer.progress")


def reporting() -> bool:
    """Whether progress reports can go anywhere (chroniker is installed)."""
    return apps.is_installed("chroniker")


def report_progress(done: int, total: int | None = None) -> None:
    """Tell chroniker that ``done`` of ``total`` parts are complete."""
    if not reporting():
        return
    from chroniker.models import Job

    try:
        Job.update_progress(total or max(done, 1), done)
    except Exception:  # noqa: BLE001 - progress must never stop the mail
        logger.warning("could not report progress to chroniker", exc_info=True)


class SendProgress:
    """``send_queued``'s ``on_progress`` for ``manage.py send_mail``: messages
    done of the messages this run will take.

    After every batch it also marks done the jobs whose last message the
    batch resolved (:class:`JobFinisher`).

    The total is learnt once, after the first batch (an empty queue costs no
    extra query): what this run has done plus what is still due, within the
    run's ``--max-messages``. Mail queued during the run can push ``done``
    past it; the total then grows with it.
    """

    def __init__(self, max_messages: int | None = None) -> None:
        self.max_messages = max_messages
        self.total: int | None = None
        self.finish_jobs = JobFinisher()

    def __call__(self, result) -> None:
        self.finish_jobs()
        if not reporting():
            return
        done = result.attempted + result.suppressed
        if self.total is None:
            from mailer.models import Message

            self.total = done + Message.all_objects.due().count()
            if self.max_messages is not None:
                self.total = min(self.total, self.max_messages)
        report_progress(done, max(self.total, done))


class JobFinisher:
    """Marks a job done the moment a send run has resolved its last message:
    a send run's ``on_progress`` (``send_queued`` calls it after every batch,
    the connection pool every few tenths of a second), or part of one
    (:class:`SendProgress`).

    The question "has this job a pending message left?" costs a scan of all
    its messages once none is left (a tenth of a second at 100,000 readers);
    asked after every batch it would cost more than the sending. So each job
    keeps a cursor, the lowest id found pending last time: the next look
    starts there and stops at the first pending message, which is usually the
    next one the run will send. Over a whole job the looks read each message
    about once. When nothing is pending from the cursor on, the full check
    (:func:`mailer.jobs.services.finish_job_if_done`) decides, so a message
    below the cursor queued again meanwhile (retry failed) keeps the job
    going, and the cursor starts over.

    A database error is logged, not raised: bookkeeping must not stop the
    mail, and ``send_mail`` and ``process_mail_jobs`` finish jobs after each
    run anyway.
    """

    #: How often the list of queued jobs is read again (seconds): reading
    #: it walks the job table, whose rows carry the recipient snapshots, so
    #: it is not done per batch. A job queued meanwhile is found at the
    #: next reading, or finished by ``send_mail`` at the end of the run.
    LIST_SECONDS = 5.0

    def __init__(self) -> None:
        #: job id -> the lowest id of its messages that may still be pending
        self.cursor: dict[int, int] = {}
        self.queued: list[int] = []
        self.listed_at: float | None = None

    def __call__(self, result=None) -> int:
        """Mark done the jobs with nothing pending; return how many."""
        try:
            return self._finish()
        except DatabaseError:
            logger.warning("could not mark finished jobs done", exc_info=True)
            return 0

    def _finish(self) -> int:
        from mailer.jobs.services import finish_job_if_done
        from mailer.models import PENDING_STATUSES, JobStatus, Message, MessageJob

        now = time.monotonic()
        if self.listed_at is None or now - self.listed_at >= self.LIST_SECONDS:
            self.listed_at = now
            self.queued = list(
                MessageJob.objects.filter(status=JobStatus.QUEUED)
                .order_by()
                .values_list("id", flat=True)
            )
            for job_id in set(self.cursor) - set(self.queued):
                del self.cursor[job_id]  # done, cancelled or paused elsewhere
        finished = 0
        for job_id in list(self.queued):
            start = self.cursor.get(job_id, 0)
            pending = (
                Message.all_objects.filter(
                    job_id=job_id, id__gte=start, status__in=PENDING_STATUSES
                )
                .order_by("id")
                .values_list("id", flat=True)[:1]
            )
            first = next(iter(pending), None)
            if first is not None:
                self.cursor[job_id] = first
                continue
            job = MessageJob.objects.defer("recipients").filter(pk=job_id).first()
            if job is None or job.status != JobStatus.QUEUED:
                self.queued.remove(job_id)  # deleted, cancelled or paused
                self.cursor.pop(job_id, None)
            elif finish_job_if_done(job):
                finished += 1
                self.queued.remove(job_id)
                self.cursor.pop(job_id, None)
            else:
                self.cursor[job_id] = 0  # pending below the cursor: start over
        return finished
