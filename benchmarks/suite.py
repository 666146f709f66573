"""The suite's figures on one database, in a process of its own.

``run.py`` starts this once per database with ``DATABASE_URL`` set (Django
settings cannot switch databases after setup)::

    python -m benchmarks.suite --database sqlite --out results.json [--quick]

Each figure is a module of ``benchmarks/figures/`` (``FIGURES`` below gives
the order); this module holds what they share: the sizes, an expanded job in
the queue, the sending backend pointed at a sink. It writes one JSON document
(one key per figure); ``run.py`` prints the table. Progress goes to stderr. A
figure that fails is recorded as ``{"error": ...}`` and the others still run.
"""

from __future__ import annotations

import contextlib
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from benchmarks.base import FigureRun
from benchmarks.base import main as run_figure
from benchmarks.figures import (
    EXPAND_BOUND,
    SLOWEST_RATE,
    admin,
    expansion,
    idle,
    limit,
    memory,
    overtaking,
    sending,
    sql,
)

#: The figures in the order they run (each module's ``KEY`` is its key in
#: the results); overtaking drains a large job last.
FIGURES = (idle, admin, expansion, limit, sending, sql, memory, overtaking)


@dataclass
class Sizes:
    mode: str
    reps: int
    subscribers: int
    expand: list[int]
    limit: int
    send: int
    sql: int
    rss: list[int]
    rss_max_messages: int
    overtake: int
    probes: int
    idle_reps: int
    cheap_reps: int = field(default=3)

    @classmethod
    def full(cls) -> Sizes:
        return cls(
            mode="full",
            reps=3,
            subscribers=100_000,
            expand=[10_000, 100_000],
            limit=6_000,
            send=6_000,
            sql=2_000,
            rss=[1_000, 100_000],
            rss_max_messages=1_000,
            overtake=100_000,
            probes=20,
            idle_reps=3,
            cheap_reps=3,
        )

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            mode="quick",
            reps=1,
            subscribers=10_000,
            expand=[10_000],
            limit=1_500,
            send=1_500,
            sql=1_000,
            rss=[1_000, 10_000],
            rss_max_messages=500,
            overtake=10_000,
            probes=20,
            idle_reps=2,
            cheap_reps=2,
        )


class Suite(FigureRun):
    """What the figures share; ``run()`` measures each of ``FIGURES``."""

    tmp_prefix = "mailer-bench-"

    def send_timeout(self, messages: int) -> float:
        """Seconds ``messages`` may take to send (at ``SLOWEST_RATE``)."""
        return 60 + messages / SLOWEST_RATE

    def queue_job(self, count: int) -> None:
        """An empty queue, then one job of ``count`` recipients, expanded by
        ``mailer.jobs.expand.expand_pending_jobs``."""
        from mailer.jobs.expand import expand_pending_jobs

        self.reset_queue()
        self.create_job(count)
        result = expand_pending_jobs(max_seconds=EXPAND_BOUND)
        if result.queued != count:
            raise AssertionError(f"expanded {result.queued} of {count}")

    @contextlib.contextmanager
    def smtp_port(self, port: int) -> Iterator[None]:
        """Point this process's sending backend at the sink on ``port``."""
        import copy

        import django
        from django.conf import settings
        from django.test import override_settings

        if django.VERSION >= (6, 1):
            mailers = copy.deepcopy(settings.MAILERS)
            mailers["smtp"]["OPTIONS"]["port"] = port
            overrides = {"MAILERS": mailers}
        else:
            overrides = {"EMAIL_PORT": port}
        with override_settings(**overrides):
            yield

    def all_sent(self, count: int) -> None:
        """Raise ``AssertionError`` unless ``count`` messages are marked sent."""
        from mailer.models import Message, MessageStatus

        sent = Message.all_objects.filter(status=MessageStatus.SENT).count()
        if sent != count:
            raise AssertionError(f"{sent} of {count} messages marked sent")

    def run(self) -> dict[str, Any]:
        started = time.monotonic()
        self.log(f"migrating ({self.sizes.mode} mode)")
        results = self.prepare()
        results["sizes"] = asdict(self.sizes)
        results["content"] = {
            "text_bytes": len(self.content.body_text.encode()),
            "html_bytes": len(self.content.body_html.encode()),
        }
        for figure in FIGURES:
            key = figure.KEY
            part_started = time.monotonic()
            try:
                results[key] = figure.measure(self)
            except Exception as error:  # noqa: BLE001 - report, run the rest
                self.log(f"{key} FAILED: {error}")
                results[key] = {"error": traceback.format_exc()}
            results.setdefault("part_seconds", {})[key] = round(
                time.monotonic() - part_started, 1
            )
            self.log(f"{key} done in {time.monotonic() - part_started:.1f} s")
            # Written after every figure: a run cut short still reports the rest.
            self.save(results)
        self.reset_queue()
        self.cleanup()
        results["seconds"] = round(time.monotonic() - started, 1)
        return results


def main(argv: list[str] | None = None) -> int:
    return run_figure(
        Suite,
        lambda args: Sizes.quick() if args.quick else Sizes.full(),
        argv,
        prog="python -m benchmarks.suite",
    )


if __name__ == "__main__":
    sys.exit(main())
