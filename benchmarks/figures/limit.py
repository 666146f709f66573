"""The limit: the engine's own bytes (taken off the wire by
``benchmarks/capture.py``) sent by a plain smtplib loop (``blast.py``) with no
database, over one connection and over two in two processes (messages per
second at the sink; CPU milliseconds per message of sink and loop). The
sending figure is quoted as a ratio of this one."""

from __future__ import annotations

import json
import os
import subprocess
from typing import TYPE_CHECKING, Any

from benchmarks.capture import capture_sent
from benchmarks.figures import median
from benchmarks.procs import PYTHON, Child, FastSink, django_env, reaped

if TYPE_CHECKING:
    from benchmarks.suite import Suite

KEY = "limit"
#: Distinct messages built for the limit; the loop cycles through them.
LIMIT_DISTINCT = 2000


def build_messages(suite: Suite, count: int) -> tuple[str, dict[str, Any]]:
    """The engine's own bytes for ``count`` recipients of the benchmark
    job, as one ``send_mail`` run sent them, pickled to a file for the
    blast processes."""
    path = os.path.join(suite.tmp, "messages.pickle")
    suite.queue_job(count)
    message = capture_sent(count, path, timeout=suite.send_timeout(count))
    suite.reset_queue()
    return path, message


def blast(suite: Suite, path: str, total: int, processes: int) -> dict[str, Any]:
    """``total`` messages from ``path`` over ``processes`` loops at once."""
    timeout = suite.send_timeout(total)
    share, extra = divmod(total, processes)
    counts = [share + (1 if i < extra else 0) for i in range(processes)]
    with FastSink(max_seconds=timeout + 60) as sink:
        children = [
            Child(
                [PYTHON, "-m", "benchmarks.blast", "--port", str(sink.port)]
                + ["--messages", path, "--count", str(count)]
                + ["--offset", str(sum(counts[:i]))],
                env=django_env(),
                stdin=subprocess.PIPE,
            )
            for i, count in enumerate(counts)
        ]
        with reaped(children):
            for child in children:
                child.wait_for_output("ready", 60)
            for child in children:
                child.write("go\n")
            finished = [child.wait(timeout).check("blast") for child in children]
        stats = sink.stop()
    if stats.count != total:
        raise AssertionError(f"sink received {stats.count} of {total}")
    clients = [json.loads(f.stdout.strip().splitlines()[-1]) for f in finished]
    return {
        "rate": stats.rate,
        "window": stats.window,
        # Between its first and last message: start-up excluded.
        "sink_cpu_ms_per_message": stats.cpu_ms_per_message,
        "client_seconds": max(c["seconds"] for c in clients),
        "client_cpu_ms_per_message": sum(c["cpu"] for c in clients) / total * 1000,
    }


def measure(suite: Suite) -> dict[str, Any]:
    total = suite.sizes.limit
    path, message = build_messages(suite, min(total, LIMIT_DISTINCT))
    out: dict[str, Any] = {"messages": total, "message": message}
    for processes, key in ((1, "one"), (2, "two")):
        runs = []
        for _ in range(suite.sizes.reps):
            runs.append(blast(suite, path, total, processes))
            suite.log(f"limit, {processes} connection(s): {runs[-1]['rate']:,.0f}/s")
        out[key] = {
            "rate": median([r["rate"] for r in runs]),
            "sink_cpu_ms_per_message": median(
                [r["sink_cpu_ms_per_message"] for r in runs]
            ),
            "client_cpu_ms_per_message": median(
                [r["client_cpu_ms_per_message"] for r in runs]
            ),
            "runs": runs,
        }
    os.unlink(path)
    return out
