"""Committing one message's outcome while the next message's envelope goes out.

The engine records each outcome the moment the relay answers (see
``mailer.sending.records``). On PostgreSQL with its stock, durable settings
that write is a commit the server flushes to disk before it answers: a round
trip, the server's work and a WAL flush, and one connection used to wait for
it message after message, while the database server's CPU and the worker's
took turns instead of working side by side.

:class:`WriteBehind` sends the outcome's statement (one statement, atomic by
itself: ``OutcomeWriter.combined_sql``) on a database connection of its own
with libpq's asynchronous interface (``PQsendQueryParams``, through psycopg
3's ``pq`` layer), and the send loop goes on: it builds the next message and
sends its MAIL FROM, RCPT TO and DATA while the server commits. It reads the
server's answer (:meth:`WriteBehind.wait`) before that next message's content
and final "." go out (``mailer.sending.transport.exchange``'s
``before_content`` hook), before any other outcome, and at the end of each
batch. So at any moment at most one message of a connection has been handed
to the relay without its outcome committed: kill -9 leaves at most one
message in doubt per connection, as when every write was waited for at once.
No thread: the wait is the only blocking point.

When something goes wrong the outcome is never lost, and the run falls back
to committing in line (``mailer.sending.engine.Sender``): a failed write
(broken connection, no answer within :data:`ANSWER_TIMEOUT`, any database
error) is written again on the worker's own connection, with its retries
(the claim token guards the message's row; the log may then hold that
attempt twice); a wait that took longer than the engine's lease margin
(:class:`SettledLate`) means the next message, whose lease and deadline were
checked before it, is not sent after it: its SMTP connection is closed
before any content, and it goes out afresh.

Used only where correct (:meth:`WriteBehind.usable`): PostgreSQL through
psycopg 3, in autocommit mode (a caller's open transaction holds rows another
connection cannot see), nothing watching the queries (``DEBUG``'s log, an
``execute_wrapper``), no connection pool in ``OPTIONS``; and by a run over one
SMTP connection (over N, N commits already wait side by side). Such a run
holds one more database connection while it sends (closed when it ends).
"""

from __future__ import annotations

import select
import selectors
import time
from typing import Any

from django.db import OperationalError, connections

__all__ = ["RecordFailed", "SettledLate", "WriteBehind", "numbered"]

#: Longest wait for the database's answer to one outcome (seconds); then
#: the connection is given up as broken (``django.db.OperationalError``) and
#: the engine writes the outcome again on its own connection, with retries.
ANSWER_TIMEOUT = 60.0

# poll(2) where the platform has it (selectors elsewhere: Windows).
_poll = getattr(select, "poll", None)
_POLLIN = getattr(select, "POLLIN", 0)
_POLLOUT = getattr(select, "POLLOUT", 0)
#: An error or a hang-up is "readable": consume_input() then raises it.
_POLLIN_OR_ERROR = (
    _POLLIN | getattr(select, "POLLERR", 0) | getattr(select, "POLLHUP", 0)
)


class RecordFailed(Exception):
    """The previous outcome could not be recorded (its error is the
    ``__cause__``); raised from the ``before_content`` hook so that the
    engine does not judge it as an SMTP error of the next message."""


class SettledLate(Exception):
    """The previous outcome was committed, but the wait took so long that
    the next message's lease and deadline, checked before it, may no longer
    hold: that message is not sent now (nothing of its content has been),
    and the engine checks them again."""


def numbered(sql: str) -> str:
    """``sql`` with Django's ``%s`` placeholders as PostgreSQL's ``$1``,
    ``$2`` ... (and ``%%`` as ``%``), for ``PQsendQueryParams``."""
    parts = sql.split("%%")
    count = 0
    out = []
    for part in parts:
        pieces = part.split("%s")
        text = pieces[0]
        for piece in pieces[1:]:
            count += 1
            text += f"${count}" + piece
        out.append(text)
    return "%".join(out)


def _text(value: Any) -> bytes | None:
    """A parameter in PostgreSQL's text format. The outcome's values are
    integers (``IntegerChoices`` members print as their value), floats
    (seconds), strings and NULLs, whose ``str()`` is that format; the
    server takes each value's type from its place in the statement."""
    return None if value is None else str(value).encode()


class WriteBehind:
    """One outcome statement in flight at a time, on a database connection
    of its own.

    :param db: the database alias the outcomes are written to.
    :param sql: the statement, with ``%s`` placeholders, returning one row
        whose first column is 1 when the message's claim was still held.
    """

    def __init__(self, db: str, sql: str) -> None:
        self.db = db
        self._sql = numbered(sql).encode()
        self._wrapper = None
        #: The values of the write in flight (given to :meth:`send`), None
        #: when nothing is. Kept until its commit is answered or
        #: :meth:`reset`, so that a failed write can be written again.
        self.pending: dict[str, Any] | None = None

    @staticmethod
    def usable(db: str) -> bool:
        """Whether outcomes written to ``db`` may be committed on another
        connection (see the module docstring)."""
        connection = connections[db]
        if connection.vendor != "postgresql":
            return False
        from django.db.backends.postgresql.psycopg_any import is_psycopg3

        return (
            is_psycopg3
            and not connection.settings_dict.get("OPTIONS", {}).get("pool")
            and not connection.in_atomic_block
            and connection.get_autocommit()
            and not connection.execute_wrappers
            and not connection.queries_logged
        )

    def _connection(self):
        """The Django connection of its own (made like the alias's, opened
        on first use and again after :meth:`reset`)."""
        if self._wrapper is None:
            main = connections[self.db]
            self._wrapper = type(main)(main.settings_dict, self.db)
        if self._wrapper.connection is None:
            self._wrapper.ensure_connection()
        return self._wrapper

    def send(self, values: dict[str, Any], params: list) -> None:
        """Send the statement with ``params`` and return without waiting;
        ``values`` are :attr:`pending` from before the first byte leaves.

        :raises RuntimeError: a write is still pending.
        :raises django.db.OperationalError: the connection is broken
            (:attr:`pending` holds ``values``).
        """
        if self.pending is not None:
            raise RuntimeError("an outcome is still being written")
        encoded = [_text(p) for p in params]
        self.pending = values
        wrapper = self._connection()
        with wrapper.wrap_database_errors:
            pgconn = wrapper.connection.pgconn
            pgconn.send_query_params(self._sql, encoded)
            deadline = time.monotonic() + ANSWER_TIMEOUT
            # Non-blocking mode: the rest when the socket takes it, reading
            # what the server sends meanwhile (libpq's rule).
            while pgconn.flush():
                if self._wait_for(pgconn, deadline, write=True):
                    pgconn.consume_input()

    def wait(self) -> bool | None:
        """Read the answer to the write in flight: True if the message's
        claim was still held, False if it had been lost, None if nothing was
        pending. Whatever it raises, :attr:`pending` keeps the write's values
        (it may or may not have been committed) until :meth:`reset`.

        :raises django.db.OperationalError: the connection broke, or no
            answer came within :data:`ANSWER_TIMEOUT`.
        :raises django.db.DatabaseError: the statement failed.
        """
        if self.pending is None:
            return None
        import psycopg
        from psycopg import pq

        wrapper = self._wrapper
        if wrapper is None or wrapper.connection is None:
            raise OperationalError("the outcomes' connection is closed")
        with wrapper.wrap_database_errors:
            pgconn = wrapper.connection.pgconn
            deadline = time.monotonic() + ANSWER_TIMEOUT
            held = None
            error = None
            while True:
                # PQgetResult blocks while the connection is busy: wait for
                # the socket first, so that every wait here is bounded.
                pgconn.consume_input()
                while pgconn.is_busy():
                    self._wait_for(pgconn, deadline, write=False)
                    pgconn.consume_input()
                result = pgconn.get_result()
                if result is None:
                    break
                if result.status == pq.ExecStatus.TUPLES_OK and held is None:
                    held = result.get_value(0, 0) == b"1"
                elif error is None and result.status in (
                    pq.ExecStatus.FATAL_ERROR,
                    pq.ExecStatus.BAD_RESPONSE,
                ):
                    error = psycopg.errors.error_from_result(result)
            if error is not None:
                raise error
        self.pending = None
        return bool(held)

    @staticmethod
    def _wait_for(pgconn, deadline: float, *, write: bool) -> bool:
        """Wait until the socket is readable (with ``write``: readable or
        writable); return whether it is readable.

        :raises psycopg.OperationalError: ``deadline`` (``time.monotonic()``)
            passed first."""
        import psycopg

        left = deadline - time.monotonic()
        if _poll is not None:
            # One system call, no limit on the descriptor's number.
            poller = _poll()
            poller.register(pgconn.socket, _POLLIN | (_POLLOUT if write else 0))
            ready = poller.poll(left * 1000) if left > 0 else []
            readable = any(mask & _POLLIN_OR_ERROR for _fd, mask in ready)
        else:
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if write else 0)
            with selectors.DefaultSelector() as selector:
                selector.register(pgconn.socket, events)
                ready = selector.select(left) if left > 0 else []
            readable = any(mask & selectors.EVENT_READ for _key, mask in ready)
        if not ready:
            raise psycopg.OperationalError(
                f"no answer from the database in {ANSWER_TIMEOUT:g} s"
            )
        return readable

    def reset(self) -> None:
        """Forget the write in flight and close the connection (it is opened
        again on the next :meth:`send`)."""
        self.pending = None
        if self._wrapper is not None:
            try:
                self._wrapper.close()
            except Exception:  # noqa: BLE001 - a broken connection may not close cleanly
                pass
            self._wrapper = None
