"""What the job page reports: counts, the sent-per-minute chart, failures,
one reader's message. Aggregate queries only (``GROUP BY`` over the job's
index), so a 100,000-reader job costs a handful of queries, no per-row work.
"""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass, field
from datetime import datetime
from datetime import timezone as dt_timezone

from django.conf import settings
from django.db import connections
from django.db.models import CharField, Count, F, Func
from django.db.models.functions import TruncMinute
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from mailer.jobs.services import job_progress
from mailer.models import JobStatus, LogResult, Message, MessageJob, MessageLog

__all__ = [
    "OUTCOMES",
    "JobReport",
    "Rebuilt",
    "job_report",
    "rebuild",
    "sample_message",
    "sent_per_minute",
    "sent_per_minute_svg",
]

#: Outcomes in the order the page shows them.
OUTCOMES = [
    ("queued", "queued"),
    ("deferred", "deferred"),
    ("in_doubt", "in doubt"),
    ("sent", "sent"),
    ("failed", "failed"),
    ("suppressed", "suppressed"),
    ("cancelled", "cancelled"),
    ("skipped", "skipped"),
]


@dataclass
class JobReport:
    """Counts of one job's readers by outcome, and why any were skipped."""

    job: MessageJob
    counts: dict[str, int]
    skip_reasons: list[tuple[str, int]] = field(default_factory=list)

    @property
    def unexpanded(self) -> int:
        """Readers whose message is not made yet (expansion still to come)."""
        return max(0, self.job.recipient_count - self.job.expanded_count)

    @property
    def finished(self) -> bool:
        """True once the job is done or cancelled: its counts stop changing."""
        return self.job.status in (JobStatus.DONE, JobStatus.CANCELLED)

    def as_json(self) -> dict:
        """The report as JSON-ready values, for the job page's live counts."""
        return {
            "status": self.job.status,
            "status_display": self.job.display_status,
            "finished": self.finished,
            "recipients": self.job.recipient_count,
            "expanded": self.job.expanded_count,
            "unexpanded": self.unexpanded,
            **self.counts,
        }


def job_report(job: MessageJob) -> JobReport:
    """Counts by outcome: two ``GROUP BY`` queries (messages by status,
    skip log rows by reason)."""
    progress = job_progress(job)
    counts = {
        "queued": progress["queued"],
        "deferred": progress["deferred"],
        "in_doubt": progress["in_doubt"] + progress["in_doubt_held"],
        "sent": progress["sent"],
        "failed": progress["failed"],
        "suppressed": progress["suppressed"],
        "cancelled": progress["cancelled"],
        "skipped": job.skipped_count,
    }
    reasons = list(
        MessageLog.objects.filter(job=job, result=LogResult.SKIPPED)
        .order_by()
        .values_list("reply")
        .annotate(n=Count("id"))
        .order_by("-n")[:20]
    )
    return JobReport(job=job, counts=counts, skip_reasons=reasons)


def sent_per_minute(job: MessageJob) -> list[tuple[datetime, int]]:
    """Emails of ``job`` sent in each minute, oldest first (the last 240
    minutes that had any), in the current time zone."""
    logs = MessageLog.objects.filter(job=job, result=LogResult.SENT).order_by()
    if connections[logs.db].vendor == "sqlite":
        # Django's TruncMinute is a Python function on SQLite, called once
        # per row (1.5 s for 90,000 sends); SQLite's own strftime over the
        # stored UTC text is C, and the minute is the same in UTC.
        minute = Func(
            F("created_at"),
            function="strftime",
            template="strftime('%%Y-%%m-%%d %%H:%%M', %(expressions)s)",
            output_field=CharField(),
        )
        rows = (
            logs.annotate(minute=minute)
            .values_list("minute")
            .annotate(n=Count("id"))
            .order_by("-minute")[:240]
        )
        parsed = []
        for text, n in rows:
            at = datetime.fromisoformat(text)
            if settings.USE_TZ:
                at = timezone.localtime(at.replace(tzinfo=dt_timezone.utc))
            parsed.append((at, n))
        return sorted(parsed)
    rows = (
        logs.annotate(minute=TruncMinute("created_at"))
        .values_list("minute")
        .annotate(n=Count("id"))
        .order_by("-minute")[:240]
    )
    return sorted(rows)


def sent_per_minute_svg(job: MessageJob, *, width: int = 600, height: int = 120):
    """The sent-per-minute chart as inline SVG (no script, no CDN): one bar
    per minute, the busiest minute full height."""
    rows = sent_per_minute(job)
    if not rows:
        return SafeString("")
    peak = max(n for _minute, n in rows)
    # Bars at most 24 px wide: a job's first minutes are not a wall of colour.
    bar = min(width / len(rows), 24)
    bars = format_html_join(
        "",
        '<rect x="{}" y="{}" width="{}" height="{}"><title>{}: {}</title></rect>',
        (
            (
                f"{i * bar:.1f}",
                f"{height - height * n / peak:.1f}",
                f"{max(bar - 1, 1):.1f}",
                f"{height * n / peak:.1f}",
                minute.strftime("%H:%M"),
                n,
            )
            for i, (minute, n) in enumerate(rows)
        ),
    )
    return format_html(
        '<svg class="mailer-chart" role="img" viewBox="0 0 {} {}" width="{}" '
        'height="{}" aria-label="{}">{}</svg>'
        '<p class="help">{} – {}; peak {} per minute</p>',
        width,
        height,
        width,
        height,
        "emails sent per minute",
        bars,
        rows[0][0].strftime("%Y-%m-%d %H:%M"),
        rows[-1][0].strftime("%H:%M"),
        peak,
    )


@dataclass
class Rebuilt:
    """A job email rebuilt as the engine builds it for its reader."""

    headers: list[tuple[str, str]]
    text: str
    html: str
    raw: str


def rebuild(message: Message) -> Rebuilt:
    """The email of one job ``message`` rebuilt by the engine's own builder
    (``sending.build.MessageBuilder``): the same template, reader values,
    unsubscribe link and Message-ID that went out; only ``Date`` is the time
    of rebuilding."""
    from mailer.sending.build import MessageBuilder

    _sender, _to, data, _message_id = MessageBuilder().build(message)
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    text = html = ""
    for part in parsed.walk():
        if part.get_content_type() == "text/plain" and not text:
            text = part.get_content()
        elif part.get_content_type() == "text/html" and not html:
            html = part.get_content()
    headers = [(name, str(value)) for name, value in parsed.items()]
    return Rebuilt(
        headers=headers, text=text, html=html, raw=data.decode("utf-8", "replace")
    )


def sample_message(job: MessageJob) -> Message:
    """A reader's message for the preview: the job's first message, or one
    built (not saved) from the first snapshot entry before expansion."""
    first = Message.all_objects.filter(job=job).order_by()[:1]
    for message in first:
        return message
    entries = MessageJob.objects.filter(pk=job.pk).values_list("recipients", flat=True)
    entry = (list(entries)[0] or [""])[0]
    address, context = (entry, None) if isinstance(entry, str) else entry
    return Message(job=job, to_address=address or "reader@example.com", context=context)
