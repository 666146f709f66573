"""Expansion: ``manage.py process_mail_jobs`` turning one job into one
Message per recipient (recipients per second), and the bytes the database
grows by per queued message."""

from __future__ import annotations

import io
import os
import time
from typing import TYPE_CHECKING, Any

from benchmarks.figures import EXPAND_BOUND, median

if TYPE_CHECKING:
    from benchmarks.suite import Suite

KEY = "expansion"


def storage(suite: Suite) -> dict[str, int | None]:
    """Bytes the database uses now; for SQLite after a WAL checkpoint, and
    counting used pages only, so that pages freed by an earlier DELETE (no
    VACUUM) are not mistaken for room the new rows took."""
    from mailer.models import Message

    table = Message._meta.db_table
    with suite.connection.cursor() as cursor:
        if suite.vendor == "postgresql":
            cursor.execute(
                "SELECT pg_total_relation_size(%s), pg_relation_size(%s), "
                "pg_indexes_size(%s)",
                [table, table, table],
            )
            total, heap, indexes = cursor.fetchone()
            return {"bytes": total, "heap": heap, "indexes": indexes}
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = cursor.execute("PRAGMA page_size").fetchone()[0]
        pages = cursor.execute("PRAGMA page_count").fetchone()[0]
        free = cursor.execute("PRAGMA freelist_count").fetchone()[0]
        path = suite.connection.settings_dict["NAME"]
        wal = f"{path}-wal"
        file_bytes = os.path.getsize(path) + (
            os.path.getsize(wal) if os.path.exists(wal) else 0
        )
        try:
            cursor.execute(
                "SELECT SUM(pgsize) FROM dbstat WHERE name IN "
                "(SELECT name FROM sqlite_master WHERE tbl_name = %s)",
                [table],
            )
            table_bytes = cursor.fetchone()[0] or 0
        except Exception:  # noqa: BLE001 - dbstat is a compile-time option
            table_bytes = None
        return {
            "bytes": (pages - free) * page_size,
            "file": file_bytes,
            "table": table_bytes,
        }


def measure(suite: Suite) -> dict[str, Any]:
    from django.core.management import call_command

    from mailer.models import Message

    out: dict[str, Any] = {}
    for count in suite.sizes.expand:
        runs = []
        for _ in range(suite.sizes.cheap_reps):
            suite.reset_queue()
            suite.create_job(count)
            before = storage(suite)
            stdout = io.StringIO()
            t = time.perf_counter()
            call_command("process_mail_jobs", max_seconds=EXPAND_BOUND, stdout=stdout)
            seconds = time.perf_counter() - t
            after = storage(suite)
            queued = Message.all_objects.count()
            if queued != count:
                raise AssertionError(f"expanded {queued} of {count}")
            per_message = {
                key: (after[key] - before[key]) / count
                for key in after
                if after[key] is not None and before[key] is not None
            }
            runs.append(
                {
                    "seconds": seconds,
                    "rate": count / seconds,
                    "bytes_per_message": per_message["bytes"],
                    "storage_per_message": per_message,
                    "summary": stdout.getvalue().strip(),
                }
            )
            suite.log(
                f"expansion {count:,}: {count / seconds:,.0f}/s, "
                f"{per_message['bytes']:.0f} B/message"
            )
        out[str(count)] = {
            "rate": median([r["rate"] for r in runs]),
            "bytes_per_message": median([r["bytes_per_message"] for r in runs]),
            "runs": runs,
        }
    suite.reset_queue()
    return out
