"""Waking idle workers when mail is queued, without busy polling.

The queuing side calls :func:`announce` inside the transaction that writes
the mail (``mailer.queue``) or the job (``mailer.jobs.create_job``):

- On PostgreSQL it runs ``SELECT pg_notify('mailer', 'send')``. PostgreSQL
  delivers a notification only when its transaction commits, so a rollback
  wakes nothing, and it folds identical notifications of one transaction into
  one: a thousand emails queued together wake each listener once. The payload
  is the kind of work ("send" or "expand"), a few bytes.
- With ``MAILER_USE_TASKS`` it enqueues a task on commit (``tasks.py``).

The waiting side is a :class:`Listener` (PostgreSQL ``LISTEN`` on a dedicated
psycopg 3 connection: no query at all while idle) or a :class:`Poller`
(SQLite and others: one indexed query every ``MAILER_POLL_SECONDS``).

The order that loses no mail is LISTEN first, then drain the queue, then
wait: mail committed before the LISTEN is found by the drain, mail committed
after it sends a notification. A listener that loses its connection
reconnects, LISTENs again, and reports a wake-up so that the worker drains
once more before it waits (mail committed while it was disconnected sent its
notification to nobody).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from django.db import connections, router
from django.db.models import Q
from django.utils import timezone

from mailer.conf import conf
from mailer.waiting import wait_until

__all__ = [
    "EXPAND",
    "SEND",
    "Interrupted",
    "Listener",
    "Poller",
    "Waiter",
    "announce",
    "listens",
    "open_waiter",
    "wait_for_work",
    "waiter_for",
    "work_waiting",
]

logger = logging.getLogger("mailer.worker")

#: The PostgreSQL notification channel.
CHANNEL = "mailer"

#: Kinds of work, also the notification payloads and the task kinds.
SEND = "send"
EXPAND = "expand"

#: Pauses between attempts to re-establish a lost LISTEN connection
#: (seconds); the last one repeats.
RECONNECT_DELAYS = (0.0, 0.5, 1.0, 2.0, 5.0, 10.0)


def database_alias() -> str:
    """The database the queue is written to."""
    from mailer.models import Message

    return router.db_for_write(Message)


def listens(using: str | None = None) -> bool:
    """Whether workers on this database wait with LISTEN/NOTIFY (PostgreSQL
    through psycopg 3) rather than by polling."""
    connection = connections[using or database_alias()]
    if connection.vendor != "postgresql":
        return False
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    return is_psycopg3


def announce(kind: str, *, using: str | None = None) -> None:
    """Wake workers for ``kind`` ("send" or "expand") when the current
    transaction commits; in autocommit mode, now.

    Call it right after writing the work, on the same database. Costs one
    short statement on PostgreSQL, nothing elsewhere (plus, with
    ``MAILER_USE_TASKS``, a task enqueued after the commit).
    """
    db = using or database_alias()
    connection = connections[db]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, kind])
    if conf.MAILER_USE_TASKS:
        from mailer.worker.tasks import request_on_commit

        request_on_commit(kind, using=db)


def work_waiting(using: str | None = None, *, jobs: bool = True) -> bool:
    """Whether a message is due or (with ``jobs``) a job waits to be
    expanded: one query, answered from the partial indexes
    ``mailer_message_claim`` and ``mailer_job_to_expand``."""
    from mailer.models import JobStatus, Message, MessageJob, Priority

    db = using or database_alias()
    # Naming every priority turns a scan of the pending rows into one index
    # search per priority (SQLite: "SEARCH ... (priority=? AND due_at<?)"),
    # so a queue of mail due later (deferred, or claimed by a busy worker)
    # costs no more than an empty one.
    due = (
        Message.all_objects.using(db)
        .filter(priority__in=Priority.values, due_at__lte=timezone.now())
        .order_by()
        .values("id")
    )
    if not jobs:
        return due.exists()
    waiting_jobs = (
        MessageJob.objects.using(db)
        .filter(status__in=[JobStatus.PENDING, JobStatus.EXPANDING])
        .filter(Q(send_at__isnull=True) | Q(send_at__lte=timezone.now()))
        .order_by()
        .values("id")
    )
    return due.union(waiting_jobs, all=True).exists()


class Interrupted(Exception):
    """Raised by the worker's signal handler to cut a wait short."""


class Waiter(Protocol):
    """How an idle worker waits for work: :class:`Poller` or
    :class:`Listener`."""

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds; True when work may be waiting."""

    def close(self) -> None:
        """Release what the waiter holds (a connection); never raises."""


class Poller:
    """Waits by asking the database every ``interval`` seconds (one indexed
    query, :func:`work_waiting`). ``interval=None`` only sleeps. ``jobs``:
    whether a job waiting to be expanded counts as work (not for a worker
    that only sends)."""

    description = "polling"

    def __init__(
        self, interval: float | None, *, using: str | None = None, jobs: bool = True
    ) -> None:
        self.interval = interval
        self.using = using or database_alias()
        self.jobs = jobs
        self.polls = 0

    def wait(self, timeout: float) -> bool:
        """Sleep ``interval`` seconds, poll, again, for up to ``timeout``
        seconds; True as soon as a poll finds work."""
        if not self.interval:
            return wait_until(timeout)

        def poll(seconds: float) -> bool:
            # Sleep first: the worker has just drained the queue.
            time.sleep(seconds)
            self.polls += 1
            return work_waiting(self.using, jobs=self.jobs)

        return wait_until(timeout, slice_seconds=self.interval, wait=poll)

    def close(self) -> None:
        """Nothing to release (the polls use Django's connection)."""


class Listener:
    """Waits on PostgreSQL ``LISTEN mailer`` over its own psycopg 3
    connection (autocommit, TCP keepalives on), separate from the one Django
    uses for the work, so waiting never holds a transaction open.

    Raises ``ImproperlyConfigured`` when the database is not PostgreSQL with
    psycopg 3.
    """

    description = "LISTEN/NOTIFY"

    def __init__(
        self,
        *,
        using: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        from django.core.exceptions import ImproperlyConfigured

        self.using = using or database_alias()
        if not listens(self.using):
            vendor = connections[self.using].vendor
            raise ImproperlyConfigured(
                f"LISTEN/NOTIFY needs PostgreSQL with psycopg 3; the database "
                f"{self.using!r} is {vendor}. Use 'manage.py runmailer', which "
                "polls instead."
            )
        self.sleep = sleep
        self.connection = None
        self.connects = 0
        self.failures = 0
        self.pid: int | None = None

    def connect(self) -> None:
        """Open the connection and LISTEN. Raises ``psycopg.Error``."""
        import psycopg

        params = connections[self.using].get_connection_params()
        for name in ("cursor_factory", "context", "prepare_threshold"):
            params.pop(name, None)
        # Keepalives let a silently dropped link (no RST) fail the wait
        # within about a minute instead of never.
        params.setdefault("keepalives", 1)
        params.setdefault("keepalives_idle", 30)
        params.setdefault("keepalives_interval", 10)
        params.setdefault("keepalives_count", 3)
        connection = psycopg.connect(**params, autocommit=True)
        try:
            connection.execute(f"LISTEN {CHANNEL}")
        except BaseException:
            connection.close()
            raise
        self.connection = connection
        self.pid = connection.info.backend_pid
        self.connects += 1
        self.failures = 0

    def wait(self, timeout: float) -> bool:
        """Block until a ``NOTIFY`` or ``timeout`` seconds; True when woken,
        or when a lost connection listens again (the caller drains then, for
        mail queued while it was down). Never raises ``psycopg.Error``: a
        broken connection is logged and reconnected with a growing pause
        (``RECONNECT_DELAYS``)."""
        import psycopg

        if self.connection is None:
            return self._reconnect(timeout)
        try:
            woken = False
            for _notify in self.connection.notifies(timeout=timeout, stop_after=1):
                woken = True
            if woken:
                # Several notifications (e.g. "send" and "expand" from one
                # transaction) need one drain: take the rest that arrived.
                for _notify in self.connection.notifies(timeout=0.01):
                    pass
            return woken
        except psycopg.Error as error:
            logger.warning("lost the LISTEN connection: %s", error)
            self.close()
            return self._reconnect(timeout)

    def _reconnect(self, timeout: float) -> bool:
        """LISTEN again; True once listening (drain before waiting), False
        after a failed attempt and a pause of at most ``timeout``."""
        import psycopg

        delay = RECONNECT_DELAYS[min(self.failures, len(RECONNECT_DELAYS) - 1)]
        if delay:
            self.sleep(min(delay, max(timeout, 0.0)))
        try:
            self.connect()
        except psycopg.Error as error:
            self.failures += 1
            logger.warning("cannot LISTEN (attempt %d): %s", self.failures, error)
            return False
        logger.info("listening again on %r", CHANNEL)
        return True

    def close(self) -> None:
        """Close the LISTEN connection; never raises."""
        if self.connection is not None:
            try:
                self.connection.close()
            except Exception:  # noqa: BLE001 - already broken; forget it
                pass
        self.connection = None


def waiter_for(
    *, listen: bool | None = None, using: str | None = None, jobs: bool = True
) -> Listener | Poller:
    """A :class:`Listener` on PostgreSQL (or when ``listen`` is True, which
    raises elsewhere), else a :class:`Poller` every ``MAILER_POLL_SECONDS``."""
    using = using or database_alias()
    if listen or (listen is None and listens(using)):
        return Listener(using=using)
    return Poller(conf.MAILER_POLL_SECONDS, using=using, jobs=jobs)


def open_waiter(
    *, listen: bool | None = None, using: str | None = None, jobs: bool = True
) -> Waiter:
    """:func:`waiter_for`, already listening when it is a :class:`Listener`
    (a failed first LISTEN is retried by its first wait)."""
    waiter = waiter_for(listen=listen, using=using, jobs=jobs)
    if isinstance(waiter, Listener):
        import psycopg

        try:
            waiter.connect()
        except psycopg.Error as error:
            logger.warning("cannot LISTEN yet (retrying while waiting): %s", error)
    return waiter


def wait_for_work(
    waiter: Waiter,
    seconds: float,
    should_stop: Callable[[], bool],
    *,
    slice_seconds: float = 1.0,
) -> bool:
    """Wait up to ``seconds`` for work, in slices of ``slice_seconds`` so a
    stop flag set by a signal handler is seen within one; True if woken."""
    return wait_until(
        seconds, should_stop=should_stop, slice_seconds=slice_seconds, wait=waiter.wait
    )
