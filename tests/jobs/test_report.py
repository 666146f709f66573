"""mailer.jobs.report's charts: outcomes over time drawn from known log rows,
one query for both charts, and the chart on the report page and in its
progress.json."""

from __future__ import annotations

import re
from datetime import datetime

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.utils import timezone

from mailer.jobs.report import outcome_buckets, outcomes_svg, report_charts
from mailer.jobs.services import RenderedEmail, create_job
from mailer.models import LogResult, MessageJob, MessageLog

pytestmark = pytest.mark.django_db

SEGMENT = re.compile(
    r'<rect class="mailer-o-[\w-]+"[^>]*data-start="([^"]+)" '
    r'data-result="([\w-]+)" data-count="(\d+)"'
)


def a_job() -> MessageJob:
    return create_job(
        content=RenderedEmail(subject="Issue 9", body_text="Hi", body_html=""),
        recipients=["r@example.com"],
        from_email="news@example.com",
    )


def at(hour: int, minute: int, second: int = 0) -> datetime:
    wall = datetime(2026, 3, 2, hour, minute, second)
    return timezone.make_aware(wall) if settings.USE_TZ else wall


def log(job: MessageJob, when: datetime, result: int, n: int = 1) -> None:
    MessageLog.objects.bulk_create(
        MessageLog(job=job, recipient=f"r{i}@x.org", result=result, created_at=when)
        for i in range(n)
    )


def segments(html: str) -> dict[tuple[str, str], int]:
    """The outcomes chart's bars: {(bucket start, outcome): count}."""
    svg = html.split("mailer-outcomes-chart", 1)[1].split("</svg>", 1)[0]
    return {(start, result): int(n) for start, result, n in SEGMENT.findall(svg)}


def test_the_outcomes_chart_counts_each_outcome_in_its_minute():
    job = a_job()
    log(job, at(10, 0, 10), LogResult.SENT, 3)
    log(job, at(10, 0, 40), LogResult.DEFERRED)
    log(job, at(10, 1, 5), LogResult.SENT, 2)
    log(job, at(10, 3, 30), LogResult.FAILED)
    log(job, at(10, 3, 59), LogResult.IN_DOUBT)
    log(a_job(), at(10, 2), LogResult.SENT, 5)  # another job's log stays out

    svg = str(outcomes_svg(job))

    assert segments(svg) == {
        ("2026-03-02T10:00", "sent"): 3,
        ("2026-03-02T10:00", "deferred"): 1,
        ("2026-03-02T10:01", "sent"): 2,
        ("2026-03-02T10:03", "in-doubt"): 1,
        ("2026-03-02T10:03", "failed"): 1,
    }
    legend = re.findall(r'<g class="mailer-legend-item">.*?<text[^>]*>([^<]+)<', svg)
    assert legend == ["sent", "deferred", "in doubt", "failed"]
    assert ">emails</text>" in svg and ">time (1-minute buckets)</text>" in svg
    ticks = re.findall(r'<text class="mailer-tick"[^>]*>([^<]+)<', svg)
    assert ticks[:5] == ["0", "1", "2", "3", "4"]  # the count axis, to the peak
    assert ticks[5:] == ["10:00", "10:02", "10:03"]  # first, middle, last bucket
    assert "<title>10:00 deferred: 1</title>" in svg


def test_a_longer_job_is_drawn_in_wider_buckets_that_add_up():
    job = a_job()
    log(job, at(9, 1), LogResult.SENT, 2)
    log(job, at(9, 4, 59), LogResult.SENT, 3)  # same 5-minute bucket as 9:01
    log(job, at(9, 5), LogResult.SUPPRESSED)
    log(job, at(12, 0), LogResult.SENT)  # three hours on: 180 / 48 > 2 minutes

    buckets = outcome_buckets(job)
    svg = str(outcomes_svg(job))

    assert buckets.width == 5 and len(buckets.starts) == 37
    assert segments(svg) == {
        ("2026-03-02T09:00", "sent"): 5,
        ("2026-03-02T09:05", "suppressed"): 1,
        ("2026-03-02T12:00", "sent"): 1,
    }
    assert ">time (5-minute buckets)</text>" in svg


def test_both_charts_cost_one_query_and_an_empty_log_draws_nothing(
    django_assert_num_queries,
):
    job = a_job()
    with django_assert_num_queries(1):
        empty = report_charts(job)
    assert (str(empty.sent_per_minute), str(empty.outcomes)) == ("", "")
    log(job, at(10, 0), LogResult.SENT, 2)
    with django_assert_num_queries(1):
        charts = report_charts(job)
    assert str(charts.sent_per_minute).count("<rect") == 1
    assert segments(str(charts.outcomes)) == {("2026-03-02T10:00", "sent"): 2}
    assert 'data-count="2"' in str(charts.sent_per_minute)


def test_the_report_page_and_its_progress_json_carry_the_outcomes_chart(client):
    job = a_job()
    log(job, at(10, 0), LogResult.SENT, 2)
    log(job, at(10, 1), LogResult.FAILED)
    client.force_login(User.objects.create_superuser("ed", "ed@example.com", "pw"))

    page = client.get(f"/admin/mailer/messagejob/{job.pk}/change/").content.decode()
    data = client.get(f"/admin/mailer/messagejob/{job.pk}/progress.json").json()

    assert "Outcomes over time" in page
    expected = {("2026-03-02T10:00", "sent"): 2, ("2026-03-02T10:01", "failed"): 1}
    assert segments(page) == expected
    assert segments(data["charts"]["outcomes"]) == expected
    assert data["charts"]["sent_per_minute"].count("<rect") == 1
