"""SQL statements per message: every statement ``send_queued()`` issues
while it sends the queued job, counted by Django's
``CaptureQueriesContext`` (statements per message, and by kind)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from benchmarks.procs import FastSink

if TYPE_CHECKING:
    from benchmarks.suite import Suite

KEY = "sql"


def measure(suite: Suite) -> dict[str, Any]:
    from django.test.utils import CaptureQueriesContext

    from mailer.sending.engine import send_queued

    total = suite.sizes.sql
    suite.queue_job(total)
    with FastSink(max_seconds=suite.send_timeout(total) + 60) as sink:
        with suite.smtp_port(sink.port):
            with CaptureQueriesContext(suite.connection) as queries:
                result = send_queued(max_seconds=suite.send_timeout(total))
        sink.stop()
    if result.sent != total:
        raise AssertionError(result.summary())
    kinds = Counter(q["sql"].split()[0].upper() for q in queries.captured_queries)
    suite.reset_queue()
    suite.log(f"SQL: {len(queries) / total:.2f} statements per message")
    return {
        "messages": total,
        "statements": len(queries),
        "per_message": len(queries) / total,
        "batches": result.batches,
        "by_kind": dict(kinds),
    }
