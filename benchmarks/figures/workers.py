"""``manage.py send_mail`` workers, one or several at once, draining the
queued job to the fast sink (messages per second at the sink; the workers'
CPU milliseconds per message, start-up included). ``sending.py`` takes turns
between these and the in-process call."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from benchmarks.figures import parse_send_summary
from benchmarks.procs import FastSink, django_command, django_env, reaped

if TYPE_CHECKING:
    from benchmarks.suite import Suite


def send_workers(suite: Suite, total: int, workers: int) -> dict[str, Any]:
    """``workers`` send_mail processes drain the ``total`` queued messages."""
    timeout = suite.send_timeout(total)
    with FastSink(max_seconds=timeout + 60) as sink:
        env = django_env(MAILER_BENCH_SMTP_PORT=str(sink.port))
        children = [django_command("send_mail", env=env) for _ in range(workers)]
        with reaped(children):
            finished = [c.wait(timeout).check("send_mail") for c in children]
        stats = sink.stop()
    summaries = [parse_send_summary(f.stdout) for f in finished]
    sent = sum(s["sent"] for s in summaries)
    if sent != total or stats.count != total:
        raise AssertionError(
            f"workers sent {sent}, sink got {stats.count} of {total}: "
            f"{[s['summary'] for s in summaries]}"
        )
    suite.all_sent(total)
    result = {
        "rate": stats.rate,
        "sink_cpu_ms_per_message": stats.cpu_ms_per_message,
        "wall": max(f.wall for f in finished),
        "cpu_ms_per_message": sum(f.cpu for f in finished) / total * 1000,
        "peak_rss_mb": max(f.peak_rss_mb or 0 for f in finished),
        "workers": [
            {"sent": s["sent"], "seconds": s["seconds"], "cpu": f.cpu}
            for s, f in zip(summaries, finished, strict=True)
        ],
    }
    if workers == 1:
        result["engine_rate"] = sent / summaries[0]["seconds"]
    return result
