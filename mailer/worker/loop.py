"""The long-lived worker behind ``runmailer`` and ``runmailer_pg``.

One loop: expand confirmed jobs, send due mail, then wait until one of

- a notification (PostgreSQL ``LISTEN``: the transaction that queued the
  mail has committed), or the poll finds work (elsewhere, every
  ``MAILER_POLL_SECONDS``);
- the next due time of mail already queued (a deferred message's retry, a
  lease of a dead worker running out);
- ``MAILER_EMPTY_QUEUE_SLEEP`` seconds, django-mailer's idle sleep, which is
  also the pause after a run that could not reach the relay.

``SIGTERM`` (and Ctrl-C) end the loop cleanly: the message in flight is
finished and recorded, the rest of its batch given back, and a wait is cut
short at once.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError, connections
from django.db.models import Min
from django.utils import timezone

from mailer.conf import conf
from mailer.worker.wakeup import Interrupted, Listener, Waiter, waiter_for

__all__ = ["Worker", "WorkerStats", "empty_queue_sleep", "stop_on_signals"]

logger = logging.getLogger("mailer.worker")

#: Longest one expansion pass runs before the worker sends what is due: a
#: password reset waits at most this long behind a 100,000-reader job.
EXPAND_SLICE_SECONDS = 5.0

#: Longest wait when nothing else bounds it (``MAILER_EMPTY_QUEUE_SLEEP =
#: None`` under LISTEN): a day.
LONGEST_WAIT = 24 * 3600.0


def empty_queue_sleep() -> float | None:
    """``MAILER_EMPTY_QUEUE_SLEEP`` (django-mailer's name, seconds; ``None``:
    no timed wake-up)."""
    return conf.MAILER_EMPTY_QUEUE_SLEEP


@dataclass
class WorkerStats:
    """What a worker did so far: drains (send runs), wake-ups, messages
    sent, messages queued by expanding jobs, runs that ended on an error."""

    drains: int = 0
    wakeups: int = 0
    sent: int = 0
    queued_by_expansion: int = 0
    errors: int = 0


class Worker:
    """Expand, send, wait; until :meth:`request_stop`.

    ``listen``: True needs PostgreSQL with psycopg 3 (``ImproperlyConfigured``
    otherwise), False polls, None chooses. ``idle_seconds`` overrides
    ``MAILER_EMPTY_QUEUE_SLEEP``. ``write`` receives one line per run that
    did something.
    """

    def __init__(
        self,
        *,
        listen: bool | None = None,
        idle_seconds: float | None = None,
        using: str | None = None,
        write: Callable[[str], None] = print,
        send_options: dict[str, Any] | None = None,
    ) -> None:
        self.waiter: Waiter = waiter_for(listen=listen, using=using)
        self.idle_seconds = idle_seconds
        self.write = write
        self.send_options = send_options or {}
        from mailer.jobs.progress import JobFinisher

        #: Marks a job done the moment the batch with its last message is
        #: recorded, not at the next drain's expansion pass.
        self.finish_jobs = JobFinisher()
        self.stats = WorkerStats()
        self.stop_requested = False
        self._waiting = False

    @property
    def description(self) -> str:
        """How this worker wakes, for its start-up line."""
        if isinstance(self.waiter, Listener):
            return "waking on PostgreSQL NOTIFY"
        interval = getattr(self.waiter, "interval", None)
        if interval:
            return f"polling every {interval:g}s"
        return "sleeping between runs"

    def request_stop(self) -> None:
        """Stop after the message in flight; cut a wait short. Safe to call
        from a signal handler."""
        self.stop_requested = True
        if self._waiting:
            raise Interrupted

    def _stopping(self) -> bool:
        return self.stop_requested

    def run(self, *, max_drains: int | None = None) -> WorkerStats:
        """Loop until stopped (or ``max_drains`` runs, for tests)."""
        if isinstance(self.waiter, Listener):
            self._listen_first()
        try:
            while not self.stop_requested:
                pause = self.drain()
                if max_drains is not None and self.stats.drains >= max_drains:
                    break
                try:
                    # Inside the try: a signal right after this line already
                    # raises Interrupted, and it must be caught here.
                    self._waiting = True
                    if self.stop_requested:
                        break
                    if self.waiter.wait(pause):
                        self.stats.wakeups += 1
                except Interrupted:
                    break
                finally:
                    self._waiting = False
        finally:
            self.waiter.close()
        return self.stats

    def _listen_first(self) -> None:
        # LISTEN before the first drain: mail committed before it is found
        # by the drain, mail committed after it wakes the wait.
        import psycopg

        try:
            self.waiter.connect()
        except psycopg.Error as error:
            logger.warning("cannot LISTEN yet (retrying while waiting): %s", error)

    def drain(self) -> float:
        """Expand and send once; return how long to wait before the next
        run (seconds)."""
        from mailer.jobs.expand import expand_pending_jobs
        from mailer.sending.engine import send_queued
        from mailer.worker.health import record_run

        self.stats.drains += 1
        idle = self.idle_seconds
        if idle is None:
            idle = empty_queue_sleep()
        try:
            expanded = expand_pending_jobs(
                max_seconds=EXPAND_SLICE_SECONDS, should_stop=self._stopping
            )
            if expanded.jobs:
                self.write(expanded.summary())
            self.stats.queued_by_expansion += expanded.queued
            result = send_queued(
                should_stop=self._stopping,
                on_progress=self.finish_jobs,
                **self.send_options,
            )
            record_run(result)
        except DatabaseError as error:
            # The database went away; the next run reconnects.
            self.stats.errors += 1
            self.write(f"database error: {str(error).strip().splitlines()[0]}")
            for connection in connections.all(initialized_only=True):
                try:
                    connection.close()
                except DatabaseError:
                    pass
            return idle if idle is not None else LONGEST_WAIT
        self.stats.sent += result.sent
        if result.attempted or result.suppressed or result.error:
            self.write(result.summary())
        if result.error:
            self.stats.errors += 1
            if result.wait_seconds:
                # A relay pause (mailer.sending.relaypause): no run can send
                # before it ends.
                return min(result.wait_seconds, LONGEST_WAIT)
            return idle if idle is not None else LONGEST_WAIT
        if expanded.stop_reason == "time limit" or result.stop_reason in (
            "time limit",
            "message limit",
        ):
            return 0.0
        return self._until_next_due(idle)

    def _until_next_due(self, idle: float | None) -> float:
        from mailer.models import Message

        next_due = Message.all_objects.filter(due_at__isnull=False).aggregate(
            m=Min("due_at")
        )["m"]
        pause = idle if idle is not None else LONGEST_WAIT
        if next_due is not None:
            until = (next_due - timezone.now()).total_seconds()
            pause = min(pause, max(until, 0.0))
        return pause


@contextmanager
def stop_on_signals(worker: Worker) -> Iterator[None]:
    """While inside, SIGTERM and SIGINT ask ``worker`` to stop cleanly."""

    def handler(signum: int, frame: Any) -> None:
        worker.request_stop()

    handled = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.signal(sig, handler) for sig in handled}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
