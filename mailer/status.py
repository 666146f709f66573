"""A snapshot of the queue, for ``manage.py mailer_status`` and monitoring."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db.models import Count, Min
from django.utils import timezone

from mailer.jobs.services import job_progress
from mailer.models import JobStatus, Message, MessageJob, MessageStatus, Priority

__all__ = ["QueueStatus", "queue_status"]


@dataclass
class QueueStatus:
    """The queue at one moment: message counts by ``(priority, status)``
    name, the age of the oldest due message (a ``timedelta``), recent jobs
    with their progress, and the last send run."""

    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    oldest_due_age: timedelta | None = None
    jobs: list[tuple[MessageJob, dict[str, int]]] = field(default_factory=list)
    #: The last send run, from any worker on any host (``worker/health.py``).
    last_run: dict[str, Any] | None = None

    def problems(self, *, max_age: float | None = None) -> list[str]:
        """Why monitoring should alert, or ``[]``: the oldest due message has
        waited over ``max_age`` seconds, or the last run could not reach the
        relay (named by host and port)."""
        found = []
        age = self.oldest_due_age
        if max_age is not None and age is not None and age.total_seconds() > max_age:
            found.append(
                f"the oldest due message has waited {age.total_seconds():.0f}s "
                f"(over {max_age:g}s)"
            )
        run = self.last_run
        if run and run.get("stop_reason") == "mail server unreachable":
            found.append(
                f"the last run ({run.get('at')}, on {run.get('host')}) could not "
                f"reach the relay {run.get('relay')}: {run.get('error')}"
            )
        return found

    def as_json(self, *, max_age: float | None = None) -> dict[str, Any]:
        """Everything ``render()`` shows, as JSON-ready values, plus
        ``healthy`` and ``problems``."""
        problems = self.problems(max_age=max_age)
        age = self.oldest_due_age
        return {
            "healthy": not problems,
            "problems": problems,
            "oldest_due_age_seconds": (
                round(age.total_seconds(), 3) if age is not None else None
            ),
            "queue": [
                {"priority": priority, "status": status, "count": n}
                for (priority, status), n in sorted(self.counts.items())
            ],
            "jobs": [
                {
                    "id": job.pk,
                    "status": job.status,
                    "send_at": job.send_at.isoformat() if job.send_at else None,
                    "subject": job.subject,
                    "recipients": job.recipient_count,
                    "expanded": job.expanded_count,
                    "skipped": job.skipped_count,
                    **progress,
                }
                for job, progress in self.jobs
            ],
            "last_run": self.last_run,
        }

    def render(self) -> str:
        """The human-readable report ``mailer_status`` prints."""
        lines = ["Queue by priority and status:"]
        if not self.counts:
            lines.append("  (empty)")
        for (priority, status), n in sorted(self.counts.items()):
            lines.append(f"  {priority:<8} {status:<10} {n:>9}")
        age = (
            f"{self.oldest_due_age.total_seconds():.0f}s"
            if self.oldest_due_age is not None
            else "-"
        )
        lines.append(f"Oldest due message waiting: {age}")
        run = self.last_run
        if run:
            outcome = "ok" if run.get("ok") else f"error: {run.get('error')}"
            lines.append(
                f"Last run: {run.get('at')} on {run.get('host')}, relay "
                f"{run.get('relay')}: sent {run.get('sent')}; {outcome}"
            )
        lines.append("Jobs:")
        if not self.jobs:
            lines.append("  (none active)")
        for job, progress in self.jobs:
            lines.append(
                f"  #{job.pk} [{job.display_status}] {job.subject[:50]!r}: "
                f"{job.expanded_count}/{job.recipient_count} expanded, "
                f"{progress['sent']} sent, {progress['deferred']} deferred, "
                f"{progress['failed']} failed, {progress['suppressed']} suppressed, "
                f"{job.skipped_count} skipped" + _in_doubt(progress)
            )
        return "\n".join(lines)


def queue_status(*, recent_jobs: int = 10) -> QueueStatus:
    """Count the queue now: a few aggregate queries, no row is locked.
    ``recent_jobs`` bounds the unfinished jobs listed (newest by the job
    model's ordering)."""
    status = QueueStatus()
    rows = (
        Message.all_objects.order_by()
        .values_list("priority", "status")
        .annotate(n=Count("id"))
    )
    for priority, message_status, n in rows:
        key = (Priority(priority).label, MessageStatus(message_status).label)
        status.counts[str(key[0]), str(key[1])] = n
    now = timezone.now()
    oldest = (
        Message.all_objects.pending().filter(due_at__lte=now).aggregate(m=Min("due_at"))
    )
    if oldest["m"] is not None:
        status.oldest_due_age = now - oldest["m"]
    jobs = MessageJob.objects.defer("recipients").exclude(
        status__in=[JobStatus.DONE, JobStatus.CANCELLED]
    )[:recent_jobs]
    status.jobs = [(job, job_progress(job)) for job in jobs]
    from mailer.worker.health import last_run

    status.last_run = last_run()
    return status


def _in_doubt(progress: dict[str, int]) -> str:
    """The job's messages in doubt (maybe delivered; retried later, or held
    for an operator), shown only when there are any."""
    waiting = progress.get("in_doubt", 0)
    held = progress.get("in_doubt_held", 0)
    if not waiting and not held:
        return ""
    return f", {waiting + held} in doubt ({held} held)"
