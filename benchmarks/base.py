"""What every figure's process shares: Django set up on the benchmark
database (``DATABASE_URL``, ``benchmarks/settings.py``), the newsletter issue
and its rendered email, an empty queue between measurements, the database's
version and durability, results written after every part.

A figure's process (``suite.py``, which runs the modules of ``figures/``;
``relay.py``; ``desk_report.py``) subclasses
:class:`FigureRun` and ends with ``sys.exit(main(MyRun, sizes, argv))``;
``run.py`` starts it once per database::

    python -m benchmarks.<figure> --database sqlite --out results.json [--quick]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any


class FigureRun:
    """One figure on one database, in a process of its own (Django set up).

    ``label`` follows the database name in progress lines on stderr
    (``12:00:01 [sqlite relay] ...``)."""

    label = ""
    tmp_prefix = "mailer-bench-"

    def __init__(self, name: str, sizes: Any, out: str) -> None:
        from django.db import connection

        self.name = name
        self.sizes = sizes
        self.out = out
        self.connection = connection
        self.vendor = connection.vendor
        self.tmp = tempfile.mkdtemp(prefix=self.tmp_prefix)

    # -- output ---------------------------------------------------------------

    def log(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        where = f"{self.name} {self.label}" if self.label else self.name
        print(f"{stamp} [{where}] {text}", file=sys.stderr, flush=True)

    def save(self, results: dict[str, Any]) -> None:
        """Write ``results`` whole (a run cut short still reports its parts)."""
        tmp = f"{self.out}.tmp"
        with open(tmp, "w") as f:
            json.dump(results, f, indent=2)
        os.replace(tmp, self.out)

    def cleanup(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- the database ---------------------------------------------------------

    def server_version(self) -> str:
        with self.connection.cursor() as cursor:
            if self.vendor == "postgresql":
                cursor.execute("SHOW server_version")
            else:
                cursor.execute("SELECT sqlite_version()")
            return str(cursor.fetchone()[0])

    def durability(self) -> dict[str, str]:
        """The settings that decide whether a commit survives a crash, and on
        PostgreSQL the client's ``prepare_threshold`` when one is set."""
        with self.connection.cursor() as cursor:
            if self.vendor == "postgresql":
                out = {}
                for name in ("fsync", "synchronous_commit", "full_page_writes"):
                    cursor.execute(f"SHOW {name}")
                    out[name] = cursor.fetchone()[0]
                # The client's side: prepared statements are a site's choice
                # (MAILER_BENCH_PREPARE=1), so a run with them says so.
                threshold = self.connection.settings_dict.get("OPTIONS", {}).get(
                    "prepare_threshold"
                )
                if threshold is not None:
                    out["prepare_threshold"] = str(threshold)
                return out
            cursor.execute("PRAGMA journal_mode")
            journal = cursor.fetchone()[0]
            cursor.execute("PRAGMA synchronous")
            level = cursor.fetchone()[0]
        names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
        return {"journal_mode": journal, "synchronous": names.get(level, str(level))}

    def prepare(self) -> dict[str, Any]:
        """Migrate, create the newsletter issue and render its email; return
        the results' opening keys (database, vendor, server version)."""
        from django.core.management import call_command

        from benchmarks.benchapp.admin import ISSUE_EMAIL
        from benchmarks.benchapp.models import Issue

        call_command("migrate", verbosity=0)
        self.issue = Issue.objects.create(
            headline="Harbour bridge reopens after two years",
            date=datetime.date(2026, 11, 28),
        )
        self.content = ISSUE_EMAIL.render(self.issue)
        return {
            "database": self.name,
            "vendor": self.vendor,
            "server_version": self.server_version(),
        }

    # -- the queue ------------------------------------------------------------

    def reset_queue(self) -> None:
        """Empty the mailer's tables (the benchmark app's data stays): one
        ``TRUNCATE ... CASCADE`` on PostgreSQL (tables other apps hang off
        these go with them), ``DELETE`` per table on SQLite."""
        from mailer.models import DontSendEntry, Message, MessageJob, MessageLog

        tables = [
            m._meta.db_table for m in (Message, MessageLog, MessageJob, DontSendEntry)
        ]
        quote = self.connection.ops.quote_name
        with self.connection.cursor() as cursor:
            if self.vendor == "postgresql":
                cursor.execute(
                    f"TRUNCATE {', '.join(quote(t) for t in tables)} "
                    "RESTART IDENTITY CASCADE"
                )
            else:
                for table in tables:
                    cursor.execute(f"DELETE FROM {quote(table)}")
                cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def create_job(self, count: int):
        """The benchmark issue's newsletter to ``count`` subscribers
        (``mailer.jobs.create_job``), not expanded."""
        from benchmarks.benchapp.admin import ISSUE_EMAIL
        from benchmarks.workload import subscribers
        from mailer.jobs.services import create_job

        return create_job(
            content=self.content,
            recipients=subscribers(count),
            from_email=ISSUE_EMAIL.from_email,
            announced_object=self.issue,
            list_id=ISSUE_EMAIL.list_id,
        )

    def run(self) -> dict[str, Any]:
        raise NotImplementedError


def main(
    run_class: Callable[[str, Any, str], FigureRun],
    sizes: Callable[[argparse.Namespace], Any],
    argv: list[str] | None = None,
    *,
    prog: str,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> int:
    """A figure module's command line: ``--database NAME --out PATH
    [--quick]`` plus the figure's own options (``add_arguments``); sets
    Django up with the benchmark settings, runs the figure, saves its JSON.
    ``sizes(args)`` gives the figure's sizes from the parsed arguments."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--database", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--quick", action="store_true")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    chosen = sizes(args)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
    import django

    django.setup()
    figure = run_class(args.database, chosen, args.out)
    figure.save(figure.run())
    return 0
