"""Sending the queued job: ``send_queued()`` in-process, one ``manage.py
send_mail`` worker, two and four workers (messages per second at the sink,
read in the table as a ratio of the limit figure; CPU milliseconds per
message). Modes take turns, so that a noisy minute does not hit one only."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from benchmarks.figures import median
from benchmarks.figures.workers import send_workers
from benchmarks.procs import FastSink

if TYPE_CHECKING:
    from benchmarks.suite import Suite

KEY = "sending"


def send_in_process(suite: Suite, total: int) -> dict[str, Any]:
    """``mailer.sending.engine.send_queued`` drains ``total`` messages."""
    from mailer.sending.engine import send_queued

    with FastSink(max_seconds=suite.send_timeout(total) + 60) as sink:
        with suite.smtp_port(sink.port):
            result = send_queued(max_seconds=suite.send_timeout(total))
        stats = sink.stop()
    if result.sent != total or stats.count != total:
        raise AssertionError(
            f"sent {result.sent}, sink got {stats.count} of {total}: {result.summary()}"
        )
    suite.all_sent(total)
    return {
        "rate": stats.rate,
        "sink_cpu_ms_per_message": stats.cpu_ms_per_message,
        "engine_rate": result.rate,
        "seconds": result.seconds,
        "cpu_ms_per_message": result.cpu_seconds / result.sent * 1000,
        "batches": result.batches,
        "connections": result.connections,
    }


def measure(suite: Suite) -> dict[str, Any]:
    total = suite.sizes.send
    modes: dict[str, Callable[[], dict[str, Any]]] = {
        "in_process": lambda: send_in_process(suite, total),
        "send_mail": lambda: send_workers(suite, total, 1),
        "workers_2": lambda: send_workers(suite, total, 2),
        "workers_4": lambda: send_workers(suite, total, 4),
    }
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
    for _ in range(suite.sizes.reps):
        for mode, send in modes.items():
            suite.queue_job(total)
            runs[mode].append(send())
            suite.log(f"send {mode} {total:,}: {runs[mode][-1]['rate']:,.0f}/s")
    suite.reset_queue()
    out: dict[str, Any] = {"messages": total}
    for mode, mode_runs in runs.items():
        out[mode] = {
            "rate": median([r["rate"] for r in mode_runs]),
            "cpu_ms_per_message": median([r["cpu_ms_per_message"] for r in mode_runs]),
            "runs": mode_runs,
        }
    return out
