"""Waiting that a stop request or a deadline cuts short: the one shape every
loop of the app uses (the throttle's pause, the idle sleep of
``send_mail --loop``, the worker's wait for new mail, the expansion's
time slice).

Deadlines are ``time.monotonic()`` values (seconds), so a clock step on the
host neither ends a wait early nor makes it last for ever.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["out_of_time", "wait_until"]


def out_of_time(
    deadline: float | None, should_stop: Callable[[], bool] | None = None
) -> bool:
    """True once ``should_stop()`` is true or the monotonic ``deadline`` has
    passed (``None``: no deadline)."""
    if should_stop is not None and should_stop():
        return True
    return deadline is not None and time.monotonic() >= deadline


def wait_until(
    seconds: float,
    *,
    deadline: float | None = None,
    should_stop: Callable[[], bool] | None = None,
    slice_seconds: float | None = None,
    wait: Callable[[float], object] = time.sleep,
) -> bool:
    """Wait up to ``seconds``, never past the monotonic ``deadline``, and
    return early once ``should_stop()`` is true or ``wait`` reports a
    wake-up.

    ``wait(timeout)`` does the waiting: ``time.sleep`` by default, or a
    waiter's ``wait`` (``mailer.worker.wakeup``) that returns True when new
    mail arrived. It is called in slices of at most ``slice_seconds`` (all at
    once when ``None``), so a stop flag set by a signal handler is seen
    within one slice. Returns True only when ``wait`` reported a wake-up.
    """
    end = time.monotonic() + seconds
    if deadline is not None:
        end = min(end, deadline)
    while not (should_stop is not None and should_stop()):
        remaining = end - time.monotonic()
        if remaining <= 0:
            return False
        if slice_seconds is not None:
            remaining = min(remaining, slice_seconds)
        if wait(remaining):
            return True
    return False
