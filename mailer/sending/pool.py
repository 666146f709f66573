"""Parallel connections: one ``send_mail`` run drives N SMTP connections at once.

A relay 25 ms away answers each message after a few round trips, so one
connection spends nearly all its time waiting; N connections wait side by
side. The pool is N threads, each running one
:class:`mailer.sending.engine.Sender`,
so each connection keeps every guarantee of a one-connection run: its own
claims and leases, one message in flight, its outcome recorded the moment the
server answers (by the thread that sent it, on that thread's own database
connection), so a ``kill -9`` leaves at most one message in doubt per
connection and loses none.

Why threads: the work is waiting on sockets (SMTP replies, database round
trips), which releases the GIL; the Python work per message (~1 ms, building
and recording) is small next to a relay's latency. Threads keep Django's
email backends usable as they are (any ``EmailBackend``, django-anymail's
ESPs), where asyncio would need an async SMTP client of its own beside them,
and processes would need one Django start-up and one set of signal handlers
each, for no gain while the GIL is not the bottleneck. Measured with
``python benchmarks/connections.py`` (the test server answering DATA after
25 ms, a shared 2-core machine), messages per second over 1, 2, 4, 8, 16
connections: SQLite 29-34, 56-62, 98-110, 139-180, 227-295 (three runs);
PostgreSQL 31, -, 98, 143, 227. Against a server that answers at once, N
makes no difference (351, 357, 365 over 1, 4, 16): the process's CPU is the
limit there, and it grows from 1.3 to 2.4 ms per message with 16 threads.
Up to 4 connections the rate grows nearly N-fold; beyond 8 the process's
CPU (one core, under the GIL) becomes the limit: 16 connections reach
227-295, not 16 x 34. More than that comes from a second ``send_mail``
process (processes share the queue safely), which is also what a
process-based pool would have bought. The default, 4
(``MAILER_CONNECTIONS``), triples the rate to a distant relay and stays
within the per-client connection limits smarthosts commonly set; an ESP or
one's own relay can take 8-16.

Why each connection claims its own batches (rather than a dispatcher thread
filling a shared priority queue): a connection's batch is exactly what
:class:`~mailer.sending.engine.Sender` knows how to hold: it renews that batch's lease,
re-checks the don't-send list for it, gives back what it has not started when
asked to stop, and a dead process's claims come back per batch. A shared
queue would need all of that again for messages claimed by one thread and
sent by another. Priority still overtakes: every claim takes the most urgent
due mail first, and each connection claims ``ceil(batch_size / N)`` messages
at a time, so a password reset queued while a newsletter drains is taken by
the next claim of any connection, behind at most ``batch_size`` messages
of the whole pool (the batches the connections hold already): the same
bound as with one connection, reached N times sooner (with the defaults and
a relay 25 ms away: 25 messages of one connection, under a second). The
extra cost is one claim query per ``batch_size / N`` messages, small next to
sending them. A batch size that also shrinks with the relay's latency would
bound the wait in seconds rather than in messages; the bound above is
already under a second at 25 ms, so the simpler rule stays.

On SQLite the connections of one run take turns to write (``_Pool.writing``):
SQLite writes one transaction at a time for the whole database, and threads
left to queue in its busy handler failed with "database is locked".

Limits belong to the run, not to a connection: ``max_messages`` is one budget
the connections draw their claims from (so the total is exact), the throttle
hands out one slot per message across all connections, ``max_seconds`` is
one deadline. A stop request (SIGTERM, ``should_stop``) or a connection that
stops with an error (the relay cannot be reached, the database went away)
stops every connection: each finishes the message it is sending, records it,
and gives back what it has claimed and not started.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, fields, replace

from django.db import connections as databases
from django.db import router

from mailer.models import Message
from mailer.sending.claim import claim_batch
from mailer.sending.engine import Limits, Sender, SendResult, _Stop

#: Most connections one run may drive. Each connection is a thread holding
#: one SMTP and one database connection (PostgreSQL's default
#: ``max_connections`` is 100), and relays limit connections per client:
#: more throughput than this comes from more ``send_mail`` processes.
MAX_CONNECTIONS = 32

#: How often (seconds) the run's own thread looks at ``should_stop`` and
#: reports progress while the connections send.
POLL_SECONDS = 0.1


def validate_connections(value: object) -> int:
    """Return ``value`` as a number of connections.

    :raises ValueError: with a message naming the allowed range, if ``value``
        is not an integer from 1 to :data:`MAX_CONNECTIONS`.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"the number of connections must be an integer, not {value!r}")
    if not 1 <= value <= MAX_CONNECTIONS:
        raise ValueError(
            f"the number of connections must be from 1 to {MAX_CONNECTIONS}, "
            f"not {value}"
        )
    return value


@dataclass
class PoolResult(SendResult):
    """What a run over several connections did, summed over them.

    ``connections`` counts the connections opened (reconnects included), as
    for one connection; ``parallel`` is how many sent at once.
    """

    parallel: int = 1

    def summary(self) -> str:
        """:meth:`SendResult.summary`, naming the connections when any
        message was attempted."""
        line = super().summary()
        if self.attempted:
            # Only when something was sent: an empty queue's run (cron's
            # every minute) prints the same line as with one connection.
            head, sep, error = line.partition("; error: ")
            line = f"{head}; {self.parallel} connections{sep}{error}"
        return line


class _Pool:
    """What the connections of one run share: a stop flag, the message
    budget, the throttle's slots. Every field is read and written under
    ``lock``."""

    def __init__(self, limits: Limits, parallel: int) -> None:
        self.lock = threading.Lock()
        # Reentrant: a partial refusal's transaction holds it around the
        # message's own _write (mailer.engine).
        self._write_lock = threading.RLock()
        self._serialize_writes = databases[router.db_for_write(Message)].vendor == (
            "sqlite"
        )
        self.stop = threading.Event()
        self.parallel = parallel
        #: Messages the connections may still claim; None: no limit.
        self.budget = limits.max_messages
        self.throttle = limits.throttle
        self.first_slot: float | None = None
        self.slots = 0
        self.senders: list[Sender] = []
        self.results: list[SendResult] = []
        self.crashes: list[BaseException] = []
        #: Connections still sending; ``ended`` is set when the last one ends.
        self.running = parallel
        self.ended = threading.Event()

    def claim(self, size: int) -> tuple[str, list[int]]:
        if self.stop.is_set():
            # Another connection stopped the run since this one last looked:
            # claiming now would take back the mail it just released.
            raise _Stop("stop requested")
        if self.budget is None:
            with self.writing():
                return claim_batch(size)
        # Budget and claim under one lock: two connections must not both
        # claim the last message's slot. Held only when --max-messages is set.
        with self.lock, self.writing():
            size = min(size, self.budget)
            if size <= 0:
                raise _Stop("message limit")
            token, ids = claim_batch(size)
            self.budget -= len(ids)
        return token, ids

    def writing(self) -> contextlib.AbstractContextManager:
        """Held around each database write of a connection, on SQLite.

        SQLite lets one connection write at a time and makes the others wait
        in its busy handler, which sleeps in steps of up to 100 ms; with
        several threads of one process queueing that way (and, without WAL,
        readers holding off every commit) writes fail with "database is
        locked" after the busy timeout, as 16 connections on a new project's
        default SQLite settings show. The connections of one run take
        turns in the process instead; SQLite's own lock then only arbitrates
        between processes. PostgreSQL writes rows, not the database: no lock.
        """
        return self._write_lock if self._serialize_writes else contextlib.nullcontext()

    def wait_for_slot(self, deadline: float | None) -> None:
        """Sleep until this message's slot: slot k starts k / throttle
        seconds after the first message of the run, whichever connection
        sends it (the single-connection rule, shared)."""
        if not self.throttle:
            return
        with self.lock:
            now = time.monotonic()
            if self.first_slot is None:
                self.first_slot = now
            slot = self.first_slot + self.slots / self.throttle
            self.slots += 1
        pause = slot - time.monotonic()
        if deadline is not None:
            pause = min(pause, deadline - time.monotonic())
        if pause > 0:
            # Wakes early on a stop request; the next limit check stops it.
            self.stop.wait(pause)


class _PooledSender(Sender):
    """One connection of the pool: a :class:`Sender` whose claims and
    throttle are shared with the other connections of the run."""

    #: N connections already wait for N commits side by side.
    write_behind = False

    def __init__(self, pool: _Pool, limits: Limits, **kwargs) -> None:
        super().__init__(limits, **kwargs)
        self.pool = pool

    def _claim(self, size: int) -> tuple[str, list[int]]:
        return self.pool.claim(size)

    def _throttle(self, started: float, deadline: float | None) -> None:
        self.pool.wait_for_slot(deadline)

    def _write(self, **values) -> None:
        with self.pool.writing():
            super()._write(**values)

    def _writing(self):
        return self.pool.writing()


def send_over_pool(
    parallel: int,
    limits: Limits,
    *,
    should_stop: Callable[[], bool] = lambda: False,
    on_progress: Callable[[SendResult], None] | None = None,
) -> PoolResult:
    """Send due mail over ``parallel`` SMTP connections at once until the
    queue is empty, a limit of ``limits`` is reached, ``should_stop()`` turns
    true, or one connection stops with an error (which then stops them all).

    ``limits`` apply to the whole run: ``max_messages`` in total,
    ``max_seconds`` from the start, ``throttle`` in messages per second over
    all connections; ``batch_size`` is shared out, each connection claiming
    ``ceil(batch_size / parallel)`` messages at a time. ``on_progress`` is
    called in the caller's thread with the running totals (a
    :class:`PoolResult`) when they change. Each connection runs in a thread
    of its own with its own database connection, closed when it ends; so it
    sees committed rows only (mail queued inside the caller's open
    transaction waits for the next run).

    :param parallel: number of connections, 1 to :data:`MAX_CONNECTIONS`.
    :raises ValueError: if ``parallel`` is out of range.
    :raises Exception: whatever a connection's thread raised that the send
        loop does not handle itself (a bug), after every connection stopped.
    """
    from mailer.conf import conf

    validate_connections(parallel)
    started, cpu_started = time.monotonic(), time.process_time()
    pool = _Pool(limits, parallel)
    if not Message.all_objects.due().exists():
        # Cron's usual case, every minute: one indexed query, as with one
        # connection, instead of one per connection and N threads.
        return _total(pool, started, cpu_started, live=False)
    batch_size = max(1, limits.batch_size or conf.MAILER_BATCH_SIZE)

    def stop_requested() -> bool:
        return pool.stop.is_set() or should_stop()

    def connection_thread() -> None:
        try:
            remaining = None
            if limits.max_seconds:
                remaining = max(limits.max_seconds - (time.monotonic() - started), 0)
            own_limits = replace(
                limits,
                max_messages=None,  # the pool's budget, in _Pool.claim
                max_seconds=remaining if remaining is None else max(remaining, 1e-6),
                batch_size=math.ceil(batch_size / parallel),
            )
            sender = _PooledSender(pool, own_limits, should_stop=stop_requested)
            with pool.lock:
                pool.senders.append(sender)
            result = sender.run()
            with pool.lock:
                pool.results.append(result)
            if result.error:
                pool.stop.set()
        except BaseException as error:  # noqa: BLE001 - re-raised by the caller
            with pool.lock:
                pool.crashes.append(error)
            pool.stop.set()
        finally:
            # Each thread opened its own database connection; Django closes
            # connections per thread, and only its owner may.
            databases.close_all()
            with pool.lock:
                pool.running -= 1
                if not pool.running:
                    pool.ended.set()

    threads = [
        threading.Thread(
            target=connection_thread, name=f"mailer-connection-{i + 1}", daemon=True
        )
        for i in range(parallel)
    ]
    for thread in threads:
        thread.start()
    reported = -1
    try:
        while not pool.ended.wait(POLL_SECONDS):
            if should_stop():
                pool.stop.set()
            if on_progress is not None:
                running = _total(pool, started, cpu_started, live=True)
                done = running.attempted + running.suppressed
                if done != reported:
                    reported = done
                    on_progress(running)
    finally:
        # An exception in the caller's thread (KeyboardInterrupt, a broken
        # progress callback) still lets every connection finish its message.
        pool.stop.set()
        for thread in threads:
            thread.join()
    if pool.crashes:
        raise pool.crashes[0]
    total = _total(pool, started, cpu_started, live=False)
    if should_stop() and total.error is None:
        total.stop_reason = "stop requested"
    if on_progress is not None and total.attempted + total.suppressed != reported:
        on_progress(total)  # the last messages, sent after the last look
    return total


#: The counters of a run (sent, deferred, ..., batches, connections,
#: released): every int field of SendResult, summed over the connections.
_COUNTS = [
    f.name
    for f in fields(SendResult)
    if isinstance(getattr(SendResult(), f.name), int)
    and not isinstance(getattr(SendResult(), f.name), bool)
]

#: Why a run stopped, most telling first: the reason of the whole run is the
#: first of these that any connection gave.
_REASONS = ("stop requested", "time limit", "message limit", "queue empty")


def _total(
    pool: _Pool, started: float, cpu_started: float, *, live: bool
) -> PoolResult:
    with pool.lock:
        parts = [s.result for s in pool.senders] if live else list(pool.results)
    total = PoolResult(parallel=pool.parallel)
    for name in _COUNTS:
        setattr(total, name, sum(getattr(part, name) for part in parts))
    total.seconds = time.monotonic() - started
    total.cpu_seconds = time.process_time() - cpu_started
    # A full rate window or a relay pause: the longest wait any connection
    # met is how long ``send_mail --loop`` sleeps.
    waits = [part for part in parts if part.wait_seconds is not None]
    if waits:
        total.wait_seconds = max(part.wait_seconds for part in waits)
    errors = [part for part in parts if part.error]
    if errors:
        # The first connection that failed says why; the others only
        # stopped because it did.
        total.stop_reason, total.error = errors[0].stop_reason, errors[0].error
    elif waits:
        total.stop_reason = waits[0].stop_reason
    else:
        reasons = {part.stop_reason for part in parts}
        total.stop_reason = next(
            (reason for reason in _REASONS if reason in reasons),
            parts[0].stop_reason if parts else "queue empty",
        )
    return total


__all__ = [
    "MAX_CONNECTIONS",
    "PoolResult",
    "send_over_pool",
    "validate_connections",
]
