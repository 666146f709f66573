"""The suite's figures, one module each.

Every module has ``KEY`` (its key in the results JSON and in
``run.py``'s table) and ``measure(suite) -> dict``, which measures the figure
on the database ``suite`` (a :class:`benchmarks.suite.Suite`) is set up on and
raises ``AssertionError`` when the run did not do what it measures (messages
missing at the sink, fewer rows expanded). ``benchmarks/suite.py`` runs them in
the order of ``FIGURES``.
"""

from __future__ import annotations

import re
import statistics
from typing import Any

#: The sink accepts at least this many messages per second, or a run fails.
SLOWEST_RATE = 150
#: Longest an expansion may take, in seconds (100,000 recipients at 1,000/s).
EXPAND_BOUND = 100.0

SUMMARY_RE = re.compile(
    r"sent (\d+), deferred (\d+), failed (\d+), suppressed (\d+) in ([\d.]+)s"
)


def median(values: list[float | None]) -> float | None:
    """The median of the values that are not None; None when none are."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def parse_send_summary(stdout: str) -> dict[str, Any]:
    """The counts in ``manage.py send_mail``'s last line ("sent N, deferred
    N, failed N, suppressed N in S s"); ``sent`` 0 when it printed none."""
    match = SUMMARY_RE.search(stdout)
    if not match:
        return {"sent": 0, "seconds": 0.0, "summary": stdout.strip()}
    sent, deferred, failed, suppressed = (int(g) for g in match.groups()[:4])
    return {
        "sent": sent,
        "deferred": deferred,
        "failed": failed,
        "suppressed": suppressed,
        "seconds": float(match.group(5)),
        "summary": stdout.strip(),
    }
