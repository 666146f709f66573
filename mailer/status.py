"""A snapshot of the queue, for ``manage.py mailer_status`` and monitoring."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from django.db.models import Count, Min
from django.utils import timezone

from mailer.jobs import job_progress
from mailer.models import JobStatus, Message, MessageJob, MessageStatus, Priority


@dataclass
class QueueStatus:
    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    oldest_due_age: timedelta | None = None
    jobs: list[tuple[MessageJob, dict[str, int]]] = field(default_factory=list)

    def render(self) -> str:
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
        lines.append("Jobs:")
        if not self.jobs:
            lines.append("  (none active)")
        for job, progress in self.jobs:
            lines.append(
                f"  #{job.pk} [{job.status}] {job.subject[:50]!r}: "
                f"{job.expanded_count}/{job.recipient_count} expanded, "
                f"{progress['sent']} sent, {progress['deferred']} deferred, "
                f"{progress['failed']} failed, {progress['suppressed']} suppressed, "
                f"{job.skipped_count} skipped"
            )
        return "\n".join(lines)


def queue_status(*, recent_jobs: int = 10) -> QueueStatus:
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
    return status
