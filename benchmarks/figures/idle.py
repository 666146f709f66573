"""Idle cost: the commands and the in-process calls on an empty queue
(wall and CPU seconds per process; milliseconds and SQL statements per
call)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from benchmarks.figures import median
from benchmarks.procs import django_env, run_django_command

if TYPE_CHECKING:
    from benchmarks.suite import Suite

KEY = "idle"


def measure(suite: Suite) -> dict[str, Any]:
    from django.test.utils import CaptureQueriesContext

    from mailer.jobs.expand import expand_pending_jobs
    from mailer.sending.engine import send_queued

    suite.reset_queue()
    env = django_env()
    out: dict[str, Any] = {}
    for command in ("send_mail", "process_mail_jobs"):
        runs = [
            run_django_command(command, env=env, timeout=60)
            for _ in range(suite.sizes.idle_reps)
        ]
        out[command] = {
            "wall": median([r.wall for r in runs]),
            "cpu": median([r.cpu for r in runs]),
            "peak_rss_mb": median([r.peak_rss_mb for r in runs]),
            "runs": [
                {"wall": r.wall, "cpu": r.cpu, "stdout": r.stdout.strip()} for r in runs
            ],
        }
        suite.log(
            f"idle {command}: {out[command]['wall']:.2f} s wall, "
            f"{out[command]['cpu']:.2f} s CPU"
        )
    for name, function in (
        ("send_queued", send_queued),
        ("expand_pending_jobs", expand_pending_jobs),
    ):
        function()  # warm up
        times = []
        for _ in range(20):
            t = time.perf_counter()
            function()
            times.append(time.perf_counter() - t)
        with CaptureQueriesContext(suite.connection) as queries:
            function()
        out[name] = {
            "ms": median(times) * 1000,
            "queries": len(queries),
            "sql": [q["sql"] for q in queries.captured_queries],
        }
    return out
