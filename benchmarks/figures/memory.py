"""Memory: the peak RSS (MB) of one ``manage.py send_mail --max-messages
N`` with a small and a large queue behind it; flat when the worker never
loads the whole queue."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from benchmarks.figures import parse_send_summary
from benchmarks.procs import FastSink, django_env, run_django_command

if TYPE_CHECKING:
    from benchmarks.suite import Suite

KEY = "memory"


def measure(suite: Suite) -> dict[str, Any]:
    limit = suite.sizes.rss_max_messages
    out: dict[str, Any] = {"max_messages": limit}
    for queued in suite.sizes.rss:
        suite.queue_job(queued)
        with FastSink(max_seconds=suite.send_timeout(limit) + 60) as sink:
            env = django_env(MAILER_BENCH_SMTP_PORT=str(sink.port))
            finished = run_django_command(
                "send_mail",
                "--max-messages",
                str(limit),
                env=env,
                timeout=suite.send_timeout(limit),
            )
            sink.stop()
        summary = parse_send_summary(finished.stdout)
        if summary["sent"] != min(limit, queued):
            raise AssertionError(summary["summary"])
        out[str(queued)] = {
            "peak_rss_mb": finished.peak_rss_mb,
            "wall": finished.wall,
            "summary": summary["summary"],
        }
        suite.log(f"send_mail with {queued:,} queued: {finished.peak_rss_mb:.1f} MB")
    return out
