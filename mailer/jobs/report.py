"""What the job page reports: counts, the sent-per-minute and
outcomes-over-time charts, failures, one reader's message. Aggregate queries
only (``GROUP BY`` over the job's index), so a 100,000-reader job costs a
handful of queries, no per-row work.
"""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from functools import cached_property

from django.conf import settings
from django.db import connections
from django.db.models import CharField, Count, F, Func, QuerySet, Value
from django.db.models.functions import TruncMinute
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from mailer.jobs.services import job_progress
from mailer.models import JobStatus, LogResult, Message, MessageJob, MessageLog
from mailer.numbers import grouped

__all__ = [
    "OUTCOMES",
    "JobReport",
    "OutcomeBuckets",
    "Rebuilt",
    "ReportCharts",
    "job_report",
    "outcome_buckets",
    "outcome_minutes",
    "outcome_minutes_query",
    "outcomes_svg",
    "rebuild",
    "report_charts",
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

    @cached_property
    def charts(self) -> ReportCharts:
        """Both charts, drawn from one query on first use."""
        return report_charts(self.job)

    @property
    def unexpanded(self) -> int:
        """Readers whose message is not made yet (expansion still to come)."""
        return max(0, self.job.recipient_count - self.job.expanded_count)

    @property
    def finished(self) -> bool:
        """True once the job is done or cancelled: its counts stop changing."""
        return self.job.status in (JobStatus.DONE, JobStatus.CANCELLED)

    def as_json(self) -> dict:
        """The report as JSON-ready values, for the job page's live counts:
        each count as a number, and under ``"shown"`` as the page writes it
        (:func:`mailer.numbers.grouped`, "5,000"), so the live counts read
        as the server's whatever the browser's own locale."""
        counts = {
            "recipients": self.job.recipient_count,
            "expanded": self.job.expanded_count,
            "unexpanded": self.unexpanded,
            **self.counts,
        }
        return {
            "status": self.job.status,
            "status_display": self.job.display_status,
            "finished": self.finished,
            **counts,
            "shown": {key: grouped(n) for key, n in counts.items()},
            # Drawn on the server like the page's; report.js swaps them in.
            "charts": {
                "sent_per_minute": self.charts.sent_per_minute,
                "outcomes": self.charts.outcomes,
            },
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


def outcome_minutes_query(job: MessageJob) -> QuerySet:
    """The query behind :func:`outcome_minutes`: ``(minute, result, rows)``
    of ``job``'s log, grouped by minute and result, unordered (its
    ``explain()`` shows the index it uses). The minute is text on SQLite
    ("YYYY-MM-DD HH:MM", UTC when ``USE_TZ``), a datetime in the current
    time zone elsewhere."""
    logs = MessageLog.objects.filter(job=job).order_by()
    if connections[logs.db].vendor == "sqlite":
        # Django's TruncMinute is a Python function on SQLite, called once
        # per row (1.5 s for 90,000 sends). SQLite stores a datetime as text,
        # "YYYY-MM-DD HH:MM:SS[.ffffff]" (Django's and mailer.dbclock's
        # format, UTC when USE_TZ), so its first 16 characters are the
        # minute: substr, in C, at half the cost of parsing with strftime.
        minute = Func(
            F("created_at"),
            Value(1),
            Value(16),
            function="substr",
            output_field=CharField(),
        )
    else:
        minute = TruncMinute("created_at")
    # COUNT(*), not COUNT(id): the index holds no id on PostgreSQL, and a
    # count of a column would send every row to the table (no index-only scan).
    return (
        logs.annotate(minute=minute)
        .values_list("minute", "result")
        .annotate(n=Count("*"))
    )


def outcome_minutes(job: MessageJob) -> list[tuple[datetime, int, int]]:
    """Log rows of ``job`` per minute and outcome: ``(minute, LogResult,
    rows)``, oldest first, minutes in the current time zone.

    One ``GROUP BY`` over the ``mailer_log_job_report`` index (job, result,
    created_at), read from the index alone; both charts are drawn from it.
    A job's log has at most a few rows per active minute and outcome, so the
    result stays small however many readers the job has.
    """
    query = outcome_minutes_query(job)
    if connections[query.db].vendor != "sqlite":
        return sorted(query)
    rows = []
    for text, result, n in query:
        at = datetime.fromisoformat(text)
        if settings.USE_TZ:
            at = timezone.localtime(at.replace(tzinfo=dt_timezone.utc))
        rows.append((at, result, n))
    return sorted(rows)


def sent_per_minute(
    job: MessageJob, minutes: list[tuple[datetime, int, int]] | None = None
) -> list[tuple[datetime, int]]:
    """Emails of ``job`` sent in each minute, oldest first (the last 240
    minutes that had any), in the current time zone. ``minutes``: the rows of
    :func:`outcome_minutes`, if already read."""
    if minutes is None:
        minutes = outcome_minutes(job)
    return [(at, n) for at, result, n in minutes if result == LogResult.SENT][-240:]


def sent_per_minute_svg(
    job: MessageJob,
    *,
    width: int = 720,
    height: int = 180,
    minutes: list[tuple[datetime, int, int]] | None = None,
) -> SafeString:
    """The sent-per-minute chart as inline SVG (no script, no CDN): one bar
    per minute that had sends (the last 240), the count axis on the left and
    the minutes below. ``width``, ``height``: pixels. Empty when nothing was
    sent yet."""
    rows = sent_per_minute(job, minutes)
    if not rows:
        return SafeString("")
    peak = max(n for _minute, n in rows)
    chart = _bar_chart(
        [(minute, {LogResult.SENT: n}) for minute, n in rows],
        [(LogResult.SENT, "sent", "sent")],
        css_class="mailer-sent-chart",
        label="emails sent per minute",
        x_label="minute",
        stamp="%H:%M",
        width=width,
        height=height,
        legend=False,
    )
    return format_html(
        '{}<p class="help">{} – {}; peak {} per minute</p>',
        chart,
        rows[0][0].strftime("%Y-%m-%d %H:%M"),
        rows[-1][0].strftime("%H:%M"),
        grouped(peak),
    )


def _nice_ticks(peak: int) -> list[int]:
    """0 and up to four more round values (1, 2 or 5 times a power of ten)
    whose last is at least ``peak``."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if peak / (step * factor) <= 4:
                size = step * factor
                return [size * i for i in range(-(-peak // size) + 1)]
        step *= 10


def _bar_chart(
    columns: list[tuple[datetime, dict[int, int]]],
    series: list[tuple[int, str, str]],
    *,
    css_class: str,
    label: str,
    x_label: str,
    stamp: str,
    width: int,
    height: int,
    legend: bool = True,
) -> SafeString:
    """A bar chart as inline SVG: one (stacked) bar per column
    ``(start, {key: count})``, a segment per entry of ``series``
    (``(key, CSS name, label)``, bottom first) with ``data-start``,
    ``data-result`` and ``data-count`` and a tooltip; a legend, the count
    axis (labelled "emails") and the time axis (labelled ``x_label``)."""
    parts: list[str] = []
    left, right = 56, 12
    # The legend: a row of swatches over the plot, wrapped when full.
    x, y = float(left), 8
    if legend:
        for _key, css, name in series:
            item = 16 + 6.5 * len(name) + 16
            if x > left and x + item > width - right:
                x, y = float(left), y + 18
            parts.append(
                format_html(
                    '<g class="mailer-legend-item"><rect class="mailer-o-{}" x="{}" '
                    'y="{}" width="12" height="12"></rect>'
                    '<text x="{}" y="{}">{}</text></g>',
                    css,
                    f"{x:.1f}",
                    y,
                    f"{x + 16:.1f}",
                    y + 10,
                    name,
                )
            )
            x += item
        y += 12
    top, bottom = y + 12, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    ticks = _nice_ticks(max(sum(c.values()) for _at, c in columns) or 1)
    scale = plot_h / ticks[-1]
    floor = top + plot_h
    for n in ticks:
        parts.append(
            format_html(
                '<line class="mailer-grid" x1="{}" x2="{}" y1="{}" y2="{}"></line>'
                '<text class="mailer-tick" x="{}" y="{}" text-anchor="end">{}</text>',
                left,
                width - right,
                f"{floor - n * scale:.1f}",
                f"{floor - n * scale:.1f}",
                left - 6,
                f"{floor - n * scale + 4:.1f}",
                grouped(n),
            )
        )
    step = plot_w / len(columns)
    # Bars at most 40 px wide: a job's first minutes are not a wall of colour.
    bar = min(max(step * 0.8, 1), 40)
    for i, (start, counts) in enumerate(columns):
        base = floor
        for key, css, name in series:
            n = counts.get(key, 0)
            if not n:
                continue
            base -= n * scale
            parts.append(
                format_html(
                    '<rect class="mailer-o-{}" x="{}" y="{}" width="{}" height="{}" '
                    'data-start="{}" data-result="{}" data-count="{}">'
                    "<title>{} {}: {}</title></rect>",
                    css,
                    f"{left + i * step + (step - bar) / 2:.1f}",
                    f"{base:.1f}",
                    f"{bar:.1f}",
                    f"{n * scale:.1f}",
                    start.strftime("%Y-%m-%dT%H:%M"),
                    css,
                    n,
                    start.strftime(stamp),
                    name,
                    grouped(n),
                )
            )
    # The time axis: the first, middle and last column's start.
    for i in sorted({0, len(columns) // 2, len(columns) - 1}):
        parts.append(
            format_html(
                '<text class="mailer-tick" x="{}" y="{}" text-anchor="middle">'
                "{}</text>",
                f"{left + (i + 0.5) * step:.1f}",
                floor + 15,
                columns[i][0].strftime(stamp),
            )
        )
    return format_html(
        '<svg class="mailer-chart {}" role="img" viewBox="0 0 {} {}" width="{}" '
        'height="{}" aria-label="{}">{}'
        '<line class="mailer-axis" x1="{}" x2="{}" y1="{}" y2="{}"></line>'
        '<text class="mailer-axis-label" x="14" y="{}" text-anchor="middle" '
        'transform="rotate(-90 14 {})">emails</text>'
        '<text class="mailer-axis-label" x="{}" y="{}" text-anchor="middle">{}</text>'
        "</svg>",
        css_class,
        width,
        height,
        width,
        height,
        label,
        SafeString("".join(parts)),
        left,
        width - right,
        floor,
        floor,
        f"{top + plot_h / 2:.1f}",
        f"{top + plot_h / 2:.1f}",
        f"{left + plot_w / 2:.1f}",
        height - 6,
        x_label,
    )


#: Log results in the order the outcomes chart stacks them (bottom first),
#: with the CSS class that colours them (mailer/static/mailer/admin.css).
CHART_OUTCOMES = [
    (LogResult.SENT, "sent"),
    (LogResult.DEFERRED, "deferred"),
    (LogResult.IN_DOUBT, "in-doubt"),
    (LogResult.FAILED, "failed"),
    (LogResult.SUPPRESSED, "suppressed"),
    (LogResult.SKIPPED, "skipped"),
    (LogResult.CANCELLED, "cancelled"),
    (LogResult.BOUNCED, "bounced"),
    (LogResult.SOFT_BOUNCED, "soft-bounced"),
    (LogResult.COMPLAINED, "complained"),
]

#: Bucket widths the outcomes chart chooses from (minutes): the narrowest
#: that draws the job's log in at most :data:`MAX_BUCKETS` bars.
BUCKET_MINUTES = [1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440]
MAX_BUCKETS = 48


@dataclass
class OutcomeBuckets:
    """Log rows of one job per time bucket and outcome.

    ``width``: bucket width in minutes; ``starts``: each bucket's start
    (local time, oldest first, every bucket from the first to the last, empty
    ones included); ``counts[i]``: ``{LogResult: rows}`` of bucket ``i``.
    """

    width: int
    starts: list[datetime]
    counts: list[dict[int, int]]

    @property
    def results(self) -> list[int]:
        """The outcomes present, in stacking order."""
        present = {result for bucket in self.counts for result in bucket}
        return [result for result, _css in CHART_OUTCOMES if result in present]


def outcome_buckets(
    job: MessageJob, minutes: list[tuple[datetime, int, int]] | None = None
) -> OutcomeBuckets | None:
    """The rows of :func:`outcome_minutes` gathered into buckets of one
    width (minutes, from :data:`BUCKET_MINUTES`, whole days past them),
    aligned to the clock; None when the job has no log yet."""
    if minutes is None:
        minutes = outcome_minutes(job)
    if not minutes:
        return None

    def minute_number(at: datetime) -> int:
        # Minutes since 1970 on the local wall clock, so hour and day buckets
        # start on the local hour and midnight.
        wall = at.replace(tzinfo=None)
        return int((wall - datetime(1970, 1, 1)).total_seconds() // 60)

    first, last = minute_number(minutes[0][0]), minute_number(minutes[-1][0])
    span = last - first + 1
    width = next((w for w in BUCKET_MINUTES if span / w <= MAX_BUCKETS), None)
    if width is None:
        width = 1440 * -(-span // (1440 * MAX_BUCKETS))
    base = first - first % width
    size = (last - base) // width + 1
    counts: list[dict[int, int]] = [{} for _ in range(size)]
    for at, result, n in minutes:
        bucket = counts[(minute_number(at) - base) // width]
        bucket[result] = bucket.get(result, 0) + n
    origin = minutes[0][0] - timedelta(minutes=minute_number(minutes[0][0]) - base)
    starts = [origin + timedelta(minutes=i * width) for i in range(size)]
    return OutcomeBuckets(width=width, starts=starts, counts=counts)


def outcomes_svg(
    job: MessageJob,
    *,
    width: int = 720,
    height: int = 260,
    minutes: list[tuple[datetime, int, int]] | None = None,
) -> SafeString:
    """Outcomes over time as inline SVG (no script, no CDN): one stacked bar
    per time bucket, a segment per outcome (sent, deferred, in doubt, ...),
    with a legend, the count axis on the left and the time axis below.
    Each segment carries ``data-start``, ``data-result`` and ``data-count``
    and a tooltip (``<title>``). ``width``, ``height``: pixels. Empty when
    the job has no log yet."""
    buckets = outcome_buckets(job, minutes)
    if buckets is None:
        return SafeString("")
    labels = dict(LogResult.choices)
    css = dict(CHART_OUTCOMES)
    days = buckets.starts[0].date() != buckets.starts[-1].date()
    stamp = "%m-%d %H:%M" if days or buckets.width >= 1440 else "%H:%M"
    if buckets.width >= 1440:
        size = f"{buckets.width // 1440}-day"
    elif buckets.width >= 60:
        size = f"{buckets.width // 60}-hour"
    else:
        size = f"{buckets.width}-minute"
    chart = _bar_chart(
        list(zip(buckets.starts, buckets.counts, strict=True)),
        [(result, css[result], str(labels[result])) for result in buckets.results],
        css_class="mailer-outcomes-chart",
        label="outcomes over time",
        x_label=f"time ({size} buckets)",
        stamp=stamp,
        width=width,
        height=height,
    )
    end = buckets.starts[-1] + timedelta(minutes=buckets.width)
    return format_html(
        '{}<p class="help">{} – {}, {} buckets; every attempt counts once, '
        "when it happened.</p>",
        chart,
        buckets.starts[0].strftime("%Y-%m-%d %H:%M"),
        end.strftime(stamp),
        size,
    )


@dataclass
class ReportCharts:
    """Both charts of a job report, drawn from one query."""

    sent_per_minute: SafeString
    outcomes: SafeString


def report_charts(job: MessageJob) -> ReportCharts:
    """The sent-per-minute and outcomes-over-time charts of ``job`` (one
    ``GROUP BY`` query, :func:`outcome_minutes`)."""
    minutes = outcome_minutes(job)
    return ReportCharts(
        sent_per_minute=sent_per_minute_svg(job, minutes=minutes),
        outcomes=outcomes_svg(job, minutes=minutes),
    )


@dataclass
class Rebuilt:
    """A job email rebuilt as the engine builds it for its reader."""

    headers: list[tuple[str, str]]
    text: str
    html: str
    raw: str

    @property
    def framed_html(self) -> str:
        """``html`` for the report's sandboxed frame: its links open in a
        new tab (:func:`mailer.jobs.views.links_open_in_the_page`)."""
        from mailer.jobs.views import links_open_in_the_page

        return links_open_in_the_page(self.html, "_blank")


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
