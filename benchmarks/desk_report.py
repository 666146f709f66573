"""The job report figure (issue 15): the admin's job page for a 100,000-reader
job, its progress.json, the job list and the delete confirmation, timed with
Django's test client on one database.

    python -m benchmarks.desk_report --database sqlite --out report.json
        [--quick] [--readers N]

``run.py`` starts it once per database (``--figures report``). One job of N
readers (100,000; ``--quick`` 10,000) is queued through ``create_job`` and
expanded; 90 % of its messages are marked sent over 30 minutes and 1 %
failed, one log row each, written in SQL (a sending run of 100,000 would take
minutes and measure the engine, not the page); the log also holds 2 N rows of
earlier single mail, as a site's log holds more than one job. Each page
is fetched ``reps`` times after one warm-up fetch, and the best time is
kept (seconds). The tables are analysed first (``VACUUM ANALYZE`` on
PostgreSQL, as autovacuum would after a send); the plan of the charts' query
(``EXPLAIN``) is recorded, to show which index it reads.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from benchmarks.base import FigureRun
from benchmarks.base import main as run_figure
from benchmarks.table import Row, render_rows

#: Issue 15's bound for the report page of a 100,000-reader job (seconds).
REPORT_TARGET = 1.0


@dataclass
class ReportSizes:
    mode: str
    #: Readers of the job.
    readers: int
    #: Timed fetches of each page (the best is kept).
    reps: int

    @classmethod
    def full(cls) -> ReportSizes:
        return cls("full", 100_000, 5)

    @classmethod
    def quick(cls) -> ReportSizes:
        return cls("quick", 10_000, 3)


class DeskReport(FigureRun):
    label = "report"
    tmp_prefix = "mailer-bench-report-"

    def build(self, n: int):
        """The job: ``n`` readers expanded, 90 % sent over 30 minutes and 1 %
        failed, one log row each."""
        from django.utils import timezone

        from mailer.jobs.expand import expand_pending_jobs
        from mailer.models import LogResult, Message, MessageStatus

        job = self.create_job(n)
        result = expand_pending_jobs(chunk_size=5000)
        if result.queued != n:
            raise AssertionError(f"expanded {result.queued} of {n}")
        ids = Message.all_objects.filter(job=job).order_by("id")
        first = ids.values_list("id", flat=True)[0]
        last_sent = ids.values_list("id", flat=True)[n * 9 // 10 - 1]
        last_failed = ids.values_list("id", flat=True)[n * 91 // 100 - 1]
        Message.all_objects.filter(job=job, id__lte=last_sent).update(
            status=MessageStatus.SENT, due_at=None
        )
        Message.all_objects.filter(
            job=job, id__gt=last_sent, id__lte=last_failed
        ).update(status=MessageStatus.FAILED, due_at=None)
        now = timezone.now()
        start = now - timedelta(minutes=30)
        spread = 1800.0 / max(last_sent - first, 1)  # seconds between sends
        self.log_messages(
            job, MessageStatus.SENT, LogResult.SENT, 250, "", start, spread
        )
        self.log_messages(
            job, MessageStatus.FAILED, LogResult.FAILED, 550, "5.1.1 no such user", now
        )
        self.log_history(2 * n, start - timedelta(days=1))
        return job

    def log_history(self, rows: int, when) -> None:
        """``rows`` log rows of earlier single mail (no job), so that the
        job's rows are a part of the log, as on a site, and the plans show
        the index the report reads rather than a scan of a one-job table."""
        from mailer.models import MessageLog

        quote = self.connection.ops.quote_name
        log = {f.name: quote(f.column) for f in MessageLog._meta.concrete_fields}
        columns = ", ".join(
            log[name]
            for name in (
                "recipient", "subject", "result", "smtp_code", "reply",
                "attempt", "message_id", "created_at",
            )
        )  # fmt: skip
        values = "'someone@example.com', '', 1, 250, '', 1, '', %s"
        table = quote(MessageLog._meta.db_table)
        if self.vendor == "postgresql":
            sql = (
                f"INSERT INTO {table} ({columns}) SELECT {values} "
                "FROM generate_series(1, %s)"
            )
        else:
            sql = (
                "WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g "
                f"WHERE x < %s) INSERT INTO {table} ({columns}) SELECT {values} FROM g"
            )
        adapt = self.connection.ops.adapt_datetimefield_value
        params = (
            [adapt(when), rows] if self.vendor == "postgresql" else [rows, adapt(when)]
        )
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)

    def log_messages(
        self,
        job,
        status: int,
        result: int,
        code: int,
        reply: str,
        start,
        spread: float = 0.0,
    ) -> None:
        """One log row per message of ``job`` in ``status``, logged ``spread``
        seconds apart by id from ``start``: one ``INSERT ... SELECT`` (a
        ``bulk_create`` of 90,000 rows costs half a minute of Python)."""
        from mailer.models import Message, MessageLog

        quote = self.connection.ops.quote_name
        m = {f.name: quote(f.column) for f in Message._meta.concrete_fields}
        log = {f.name: quote(f.column) for f in MessageLog._meta.concrete_fields}
        columns = ", ".join(
            log[name]
            for name in (
                "message_pk", "job", "recipient", "subject", "result",
                "smtp_code", "reply", "attempt", "message_id", "created_at",
            )
        )  # fmt: skip
        if self.vendor == "postgresql":
            when = "%s::timestamptz + (" + m["id"] + " - %s) * %s * interval '1 second'"
        else:
            when = (
                "strftime('%%Y-%%m-%%d %%H:%%M:%%f', %s, '+' || (("
                + m["id"]
                + " - %s) * %s) || ' seconds')"
            )
        sql = (
            f"INSERT INTO {quote(MessageLog._meta.db_table)} ({columns}) "
            f"SELECT {m['id']}, {m['job']}, {m['to_address']}, '', %s, %s, %s, 1, "
            f"'', {when} FROM {quote(Message._meta.db_table)} "
            f"WHERE {m['job']} = %s AND {m['status']} = %s"
        )
        adapt = self.connection.ops.adapt_datetimefield_value
        first = Message.all_objects.filter(job=job).order_by("id")[0].id
        with self.connection.cursor() as cursor:
            cursor.execute(
                sql, [result, code, reply, adapt(start), first, spread, job.pk, status]
            )

    def best(self, fetch: Callable[[], Any]) -> float:
        """Best of ``reps`` timed calls after one warm-up (seconds)."""
        fetch()
        times = []
        for _ in range(self.sizes.reps):
            started = time.perf_counter()
            fetch()
            times.append(time.perf_counter() - started)
        return min(times)

    def run(self) -> dict[str, Any]:
        from django.contrib.auth.models import User
        from django.test import Client

        from mailer.jobs.report import (
            job_report,
            outcome_minutes_query,
            rebuild,
            report_charts,
            sample_message,
        )
        from mailer.models import Message, MessageLog

        started = time.monotonic()
        results = self.prepare()
        results["sizes"] = asdict(self.sizes)
        n = self.sizes.readers
        self.log(f"building a job of {n:,} readers")
        job = self.build(n)
        # The planner's statistics (and PostgreSQL's visibility map, for
        # index-only scans), as autovacuum leaves them on a site after a send.
        with self.connection.cursor() as cursor:
            if self.vendor == "postgresql":
                for model in (Message, MessageLog):
                    cursor.execute(f"VACUUM ANALYZE {model._meta.db_table}")
            else:
                cursor.execute("ANALYZE")
        results["build_seconds"] = round(time.monotonic() - started, 1)
        self.save(results)
        editor = User.objects.create_superuser("bench", "b@example.com", "pw")
        client = Client()
        client.force_login(editor)
        jobs_url = "/admin/mailer/messagejob/"

        def page(url: str) -> Callable[[], None]:
            def fetch() -> None:
                response = client.get(url)
                if response.status_code != 200:
                    raise AssertionError(f"{url}: {response.status_code}")

            return fetch

        report_url = f"{jobs_url}{job.pk}/change/"
        pages = {
            "report": page(report_url),
            "reader_search": page(f"{report_url}?reader=reader{n // 2}@example.com"),
            "progress_json": page(f"{jobs_url}{job.pk}/progress.json"),
            "job_list": page(jobs_url),
            "counts": lambda: job_report(job),
            "charts": lambda: report_charts(job),
            "sample_rebuild": lambda: rebuild(sample_message(job)),
        }
        results["seconds_best"] = times = {}
        for name, fetch in pages.items():
            times[name] = self.best(fetch)
            self.log(f"{name}: {times[name]:.3f} s")
        results["charts_plan"] = outcome_minutes_query(job).explain()
        self.log(f"charts query plan: {results['charts_plan']}")
        confirm = {"action": "delete_selected", "_selected_action": [job.pk]}
        t = time.perf_counter()
        response = client.post(jobs_url, confirm)
        times["delete_confirmation"] = time.perf_counter() - t
        if response.status_code != 200:
            raise AssertionError(f"delete confirmation: {response.status_code}")
        t = time.perf_counter()
        response = client.post(jobs_url, {**confirm, "post": "yes"})
        times["delete"] = time.perf_counter() - t
        if response.status_code != 302:
            raise AssertionError(f"delete: {response.status_code}")
        self.log(
            f"delete confirmation {times['delete_confirmation']:.3f} s, "
            f"delete {times['delete']:.3f} s"
        )
        self.reset_queue()
        self.cleanup()
        results["seconds"] = round(time.monotonic() - started, 1)
        return results


# -- the table, as data ----------------------------------------------------------


def _seconds(key: str) -> Callable[[dict[str, Any]], tuple[str, float | None]]:
    def cell(r: dict[str, Any]) -> tuple[str, float | None]:
        value = r.get("seconds_best", {}).get(key)
        if value is None:
            return ("failed" if "error" in r else "-"), None
        text = f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
        return text, value

    return cell


def rows(sizes: dict[str, Any]) -> list[tuple[str, list[Row]]]:
    """The report table's one section, for the sizes the run used."""
    n = sizes.get("readers", 0)
    title = (
        f"Job report, {n:,} readers (90% sent over 30 min, 1% failed; best of "
        f"{sizes.get('reps', '-')}, Django's test client)"
    )
    full = n >= 100_000
    return [
        (
            title,
            [
                Row(
                    "report page GET",
                    _seconds("report"),
                    target=f"< {REPORT_TARGET:g} s" if full else "",
                    meets=(lambda v: v < REPORT_TARGET) if full else None,
                ),
                Row("report page with a reader search", _seconds("reader_search")),
                Row("progress.json (polled every 5 s)", _seconds("progress_json")),
                Row("job list", _seconds("job_list")),
                Row("  of which: counts by outcome", _seconds("counts")),
                Row("  of which: both charts (one query)", _seconds("charts")),
                Row("  of which: sample email rebuilt", _seconds("sample_rebuild")),
                Row("delete confirmation page (once)", _seconds("delete_confirmation")),
                Row("delete the job (once)", _seconds("delete")),
            ],
        )
    ]


def table(report: dict[str, dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """The report table for ``{database name: results}``: its text (with the
    charts query's plan per database) and its rows as data."""
    first = next((r for r in report.values() if "sizes" in r), {})
    text, data = render_rows(report, rows(first.get("sizes", {})))
    notes = []
    for name, r in report.items():
        if "charts_plan" in r:
            plan = " / ".join(
                line.strip(" -|`") for line in r["charts_plan"].splitlines()
            )
            notes.append(f"  {name} charts query plan: {plan}")
        if "error" in r:
            notes.append(f"  {name}: ERROR {r['error'].strip().splitlines()[-1]}")
    head = "Job report: the admin's job page of one big job (benchmarks/desk_report.py)"
    return "\n".join([head, *notes, "", text]), data


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--readers", type=int, help="readers of the job")


def _sizes(args: argparse.Namespace) -> ReportSizes:
    sizes = ReportSizes.quick() if args.quick else ReportSizes.full()
    if args.readers:
        sizes.readers = args.readers
    return sizes


def main(argv: list[str] | None = None) -> int:
    return run_figure(
        DeskReport,
        _sizes,
        argv,
        prog="python -m benchmarks.desk_report",
        add_arguments=_arguments,
    )


if __name__ == "__main__":
    sys.exit(main())
