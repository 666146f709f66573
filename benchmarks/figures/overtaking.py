"""Priority latency: while a ``send_mail`` worker drains a large job, a
high-priority ``mailer.send_mail()`` (a password reset) is queued every
0.1-0.3 s; seconds from its commit until the marking sink
(``benchmarks/marksink.py``) receives it (median and worst)."""

from __future__ import annotations

import json
import random
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from benchmarks.figures import median, parse_send_summary
from benchmarks.procs import (
    PYTHON,
    Child,
    ChildFailed,
    django_command,
    django_env,
    reaped,
)

if TYPE_CHECKING:
    from benchmarks.suite import Suite

KEY = "overtaking"


class Events:
    """The JSON lines the marking sink prints, read as they come."""

    def __init__(self, child: Child) -> None:
        self.child = child
        self.seen = 0

    def wait(self, match: Callable[[dict], bool], timeout: float) -> dict:
        """The first new event ``match`` accepts; raises ``ChildFailed``
        after ``timeout`` seconds or when the sink has exited."""
        deadline = time.monotonic() + timeout
        while True:
            output = self.child.output_so_far()
            # Only complete lines: the last one may still be being written.
            complete = output[: output.rfind("\n") + 1].splitlines()
            for line in complete[self.seen :]:
                self.seen += 1
                event = json.loads(line)
                if match(event):
                    return event
            if time.monotonic() > deadline or not self.child.running():
                raise ChildFailed(f"marking sink: no matching event in {timeout} s")
            time.sleep(0.002)


def measure(suite: Suite) -> dict[str, Any]:
    import mailer
    from mailer.models import Message

    pending = Message.all_objects.pending().count()
    if pending < suite.sizes.overtake * 0.9:
        suite.queue_job(suite.sizes.overtake)
        pending = suite.sizes.overtake
    bound = suite.send_timeout(pending) + 60
    sink = Child(
        [PYTHON, "-m", "benchmarks.marksink", "--mark", "probe-"]
        + ["--max-seconds", str(bound)],
        env=django_env(),
    )
    events = Events(sink)
    children = [sink]
    delays: list[float] = []
    rng = random.Random(7)
    with reaped(children):
        port = events.wait(lambda e: e["event"] == "ready", 20)["port"]
        worker = django_command(
            "send_mail", env=django_env(MAILER_BENCH_SMTP_PORT=str(port))
        )
        children.append(worker)
        events.wait(lambda e: e["event"] == "first", 60)
        time.sleep(0.5)
        for i in range(suite.sizes.probes):
            if not worker.running():
                break
            rcpt = f"probe-{i}@example.com"
            sent_at = time.time()
            mailer.send_mail(
                "Your password reset link",
                "Follow this link to choose a new password.",
                None,
                [rcpt],
                priority="high",
            )
            arrived = events.wait(
                lambda e, r=rcpt: e["event"] == "marked" and e["rcpt"] == r, 60
            )
            delays.append(arrived["at"] - sent_at)
            # Uneven gaps, so that probes land at every point of a batch.
            time.sleep(0.1 + rng.random() * 0.2)
        still_draining = worker.running()
        # SIGTERM: the worker finishes the message in flight and stops.
        worker.signal(signal.SIGTERM)
        finished = worker.wait(60)
        sink.signal(signal.SIGTERM)
        sink.wait(15)
    suite.reset_queue()
    summary = parse_send_summary(finished.stdout)
    suite.log(
        f"overtaking: median {median(delays) or 0:.3f} s, "
        f"worst {max(delays, default=0):.3f} s over {len(delays)} probes"
    )
    return {
        "queued": pending,
        "probes": len(delays),
        "median": median(delays),
        "worst": max(delays) if delays else None,
        "delays": delays,
        "still_draining": still_draining,
        "newsletter_sent_meanwhile": summary.get("sent"),
    }
