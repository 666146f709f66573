"""The bytes the engine sends, taken off the wire: the limit loops
(``blast.py``) send exactly these, and no benchmark calls the engine's
private code to build them."""

from __future__ import annotations

import pickle
import statistics
from typing import Any

from benchmarks.procs import FastSink, django_env, run_django_command


def capture_sent(count: int, path: str, timeout: float = 300) -> dict[str, Any]:
    """Run ``manage.py send_mail`` once against a capturing
    ``benchmarks/fastsink.py`` and pickle the first ``count`` messages it
    delivers to ``path`` as ``(envelope_from, [recipients], bytes)``.

    The queue must hold at least ``count`` messages (the caller queues them,
    and empties the queue afterwards). Returns the average size in bytes and
    how many were captured; raises ``AssertionError`` when fewer arrived."""
    with FastSink(timeout + 60, capture=path, capture_count=count) as sink:
        env = django_env(MAILER_BENCH_SMTP_PORT=str(sink.port))
        args = ["send_mail", "--max-messages", str(count)]
        run_django_command(*args, env=env, timeout=timeout)
        stats = sink.stop()
    with open(path, "rb") as f:
        captured = pickle.load(f)
    if stats.count < count or len(captured) != count:
        raise AssertionError(f"captured {len(captured)} of {count} messages")
    sizes = [len(message[2]) for message in captured]
    return {"bytes": statistics.mean(sizes), "distinct": len(captured)}
