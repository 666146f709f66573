"""A worker whose clock is wrong, for tests of the one-clock rule.

``shift(seconds)`` moves this process's wall clock as Django and the engine
see it (``django.utils.timezone.now`` and ``time.time``) by ``seconds``,
ahead (positive) or behind. ``time.monotonic()`` is left alone: it measures
durations, and no other process ever compares it. Call it before models are
imported (from a settings module, as ``tests/settings.py`` does for
``MAILER_TEST_CLOCK_OFFSET``), so that model defaults pick it up too.
"""

from __future__ import annotations

import time
from datetime import timedelta

from django.utils import timezone

__all__ = ["shift"]


def shift(seconds: float) -> None:
    """Make this process's clock run ``seconds`` ahead (or behind, if
    negative) of the machine's."""
    if not seconds:
        return
    real_now = timezone.now
    real_time = time.time
    delta = timedelta(seconds=seconds)

    def now():
        return real_now() + delta

    def skewed_time() -> float:
        return real_time() + seconds

    timezone.now = now
    time.time = skewed_time
