"""Writing one attempt's outcome: the per-message database work of the send
loop, kept to one short transaction of two statements (one statement on
PostgreSQL).

The raw SQL here (like ``mailer.jobs.expand.MessageInserter``'s) is for speed: the ORM's
``filter().update()`` plus ``objects.create()`` cost several hundred
microseconds of Python per message, as much as sending the message to a
local server. The statements are composed once per run from the models'
metadata (table and column names, the backend's quoting and value
adaptation), so they follow the models and work on every backend Django
supports.

On the usual path (autocommit, no ``execute_wrapper`` installed, no query
logging) the statements run on the driver's own cursor, kept for the run,
inside Django's ``wrap_database_errors`` so errors are still Django's
(``OperationalError`` ...): Django's cursor wrapper, made and closed per
message, and its per-statement placeholder rewriting cost about as much
Python as SQLite's own work. Anything that watches queries (an
``execute_wrapper``, ``DEBUG``'s query log, ``CaptureQueriesContext``)
gets Django's cursor as before.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from django.db import connections, router, transaction
from django.utils import timezone

from mailer.dbclock import now_plus_sql, offset_param
from mailer.models import Message, MessageLog

__all__ = ["OutcomeWriter"]

#: Django's placeholder rewriting for SQLite (``SQLiteCursorWrapper.
#: convert_query``), done once per statement instead of once per execution.
_FORMAT_PLACEHOLDER = re.compile(r"(?<!%)%s")


def _qmark(sql: str) -> str:
    return _FORMAT_PLACEHOLDER.sub("?", sql).replace("%%", "%")


def _columns(model, names: list[str]) -> list[str]:
    return [model._meta.get_field(name).column for name in names]


class Statements(NamedTuple):
    """The outcome's SQL in one placeholder style: ``combined`` (PostgreSQL:
    both in one statement) or the ``update`` and ``insert`` pair."""

    combined: str | None
    update: str
    insert: str


class OutcomeWriter:
    """Writes one attempt's outcome: the message's new state (guarded by its
    claim token) and its ``MessageLog`` row, together. One per
    :class:`~mailer.sending.engine.Sender`, on the database Django's router
    picks for writing ``Message``; :meth:`write` raises Django's database
    errors (``django.db.OperationalError`` ...), which the engine retries."""

    LOG_FIELDS = [
        "message_pk",
        "job",
        "recipient",
        "subject",
        "result",
        "smtp_code",
        "reply",
        "attempt",
        "message_id",
        "created_at",
    ]

    def __init__(self) -> None:
        self.db = router.db_for_write(Message)
        connection = connections[self.db]
        quote = connection.ops.quote_name
        self.ops = connection.ops
        m = {f.name: quote(f.column) for f in Message._meta.concrete_fields}
        self.vendor = connection.vendor
        # Due times and the log's time come from the database's clock (see
        # mailer.dbclock); a parameter is the offset in seconds from it.
        self.now_sql = now_plus_sql(self.vendor)
        due_sql = self.now_sql or "%s"
        # The claim token in the WHERE clause: a worker whose lease ran out and
        # whose message was taken over writes nothing over the new owner's
        # state (the log row still records what this worker did).
        self.update_sql = (
            f"UPDATE {quote(Message._meta.db_table)} SET "
            f"{m['status']} = %s, {m['claim_token']} = NULL, "
            f"{m['attempts']} = {m['attempts']} + %s, "
            f"{m['in_doubt']} = {m['in_doubt']} + %s, "
            f"{m['due_at']} = {due_sql}, "
            f"{m['message_id']} = COALESCE(%s, {m['message_id']}), "
            f"{m['provider_id']} = COALESCE(%s, {m['provider_id']}) "
            f"WHERE {m['id']} = %s AND {m['claim_token']} = %s"
        )
        log_columns = ", ".join(quote(c) for c in _columns(MessageLog, self.LOG_FIELDS))
        placeholders = ", ".join(["%s"] * (len(self.LOG_FIELDS) - 1) + [due_sql])
        self.insert_sql = (
            f"INSERT INTO {quote(MessageLog._meta.db_table)} ({log_columns}) "
            f"VALUES ({placeholders})"
        )
        # PostgreSQL runs both in ONE statement (a data-modifying CTE): one
        # round trip to the server per message instead of four (BEGIN,
        # UPDATE, INSERT, COMMIT), and a single statement is atomic by itself.
        self.combined_sql = (
            f"WITH updated AS ({self.update_sql} RETURNING 1) "
            f"{self.insert_sql} RETURNING (SELECT count(*) FROM updated)"
            if connection.vendor == "postgresql"
            else None
        )
        #: The statements in Django's placeholder style (its cursor), and in
        #: the driver's own (SQLite's "?", rewritten once here, not per
        #: execution as Django's SQLite cursor does).
        self.django_sql = Statements(
            self.combined_sql, self.update_sql, self.insert_sql
        )
        self.driver_sql = (
            Statements(None, _qmark(self.update_sql), _qmark(self.insert_sql))
            if self.vendor == "sqlite"
            else self.django_sql
        )
        # (driver connection, its cursor, keyword arguments of execute()) of
        # the current database connection, one tuple so that it is replaced
        # whole; a reconnect makes a new connection and so a new cursor.
        self._driver: tuple = (None, None, {})

    def _driver_cursor(self, connection) -> tuple | None:
        """(driver connection, DB-API cursor, execute() keyword arguments) to
        run the statements on directly, or None when Django's own cursor must
        be used (something watches the queries)."""
        if connection.execute_wrappers or connection.queries_logged:
            return None
        raw = connection.connection
        if raw is None:
            return None
        if raw is not self._driver[0]:
            self._driver = (raw, *self._new_cursor(raw))
        return self._driver

    def _new_cursor(self, raw) -> tuple:
        # psycopg 3's connection class is psycopg.Connection (module
        # "psycopg"); psycopg2's has no server-side binding.
        if self.vendor == "postgresql" and type(raw).__module__.split(".")[0] == (
            "psycopg"
        ):
            # A cursor binding values on the server: each message sends the
            # statement with $n placeholders and its values apart, instead of
            # Django's client-side cursor quoting every value into the SQL
            # text. ``prepare=True`` prepares it once per connection where the
            # project enabled prepared statements (Django's OPTIONS
            # "prepare_threshold"; off by default, for PgBouncer's sake).
            import psycopg

            return psycopg.Cursor(raw), {"prepare": True}
        return raw.cursor(), {}

    def params(
        self,
        *,
        message: Message,
        status: int,
        attempts_added: int,
        due_in: float | None,
        message_id: str | None,
        provider_id: str | None,
        result: int,
        smtp_code: int | None,
        reply: str,
        attempt: int,
        now: datetime | None = None,
        in_doubt_added: int = 0,
        token: str,
    ) -> tuple[list, list]:
        """(update parameters, log parameters) of one outcome, for
        :attr:`update_sql` and :attr:`insert_sql` (:attr:`combined_sql`
        takes both lists, joined).

        ``token``: the claim the message must still be under;
        ``due_in``: seconds from the database's now until the message is due
        again, or ``None`` once it left the queue; ``now`` (default
        ``timezone.now()``) is used only on databases without a clock
        expression (see ``mailer.dbclock``); the rest are the new status
        (``MessageStatus``), the counters' increments and the log row's
        fields (``LogResult``, the SMTP reply code and text, the attempt's
        number).
        """
        if self.now_sql:
            due = offset_param(self.vendor, due_in)
            logged_at = offset_param(self.vendor, 0.0)
        else:
            adapt = self.ops.adapt_datetimefield_value
            now = now or timezone.now()
            due = None if due_in is None else adapt(now + timedelta(seconds=due_in))
            logged_at = adapt(now)
        update_params = [
            status,
            attempts_added,
            in_doubt_added,
            due,
            message_id,
            provider_id,
            message.pk,
            token,
        ]
        log_params = [
            message.pk,
            message.job_id,
            message.to_address[:320],
            message.subject[:255],
            result,
            smtp_code,
            reply[:2000],
            attempt,
            (message_id or message.message_id or "")[:255],
            logged_at,
        ]
        return update_params, log_params

    def write(self, **values: Any) -> bool:
        """Record the outcome whose values :meth:`params` takes (the same
        keyword arguments); return False if the claim had been lost (the
        message's state is then left to its new owner; the log row is still
        written)."""
        update_params, log_params = self.params(**values)
        connection = connections[self.db]
        if not connection.get_autocommit() or self.vendor not in (
            "postgresql",
            "sqlite",
        ):
            # Inside the caller's transaction (a test, a custom runner), or
            # another database: a transaction (or savepoint) keeps the pair
            # atomic.
            with transaction.atomic(using=self.db), connection.cursor() as cursor:
                return self._execute(cursor, self.django_sql, update_params, log_params)
        driver = self._driver_cursor(connection)
        if driver is not None:
            _raw, cursor, options = driver
            with connection.wrap_database_errors:
                return self._autocommit(
                    connection,
                    cursor,
                    self.driver_sql,
                    update_params,
                    log_params,
                    options,
                )
        with connection.cursor() as cursor:
            return self._autocommit(
                connection, cursor, self.django_sql, update_params, log_params, {}
            )

    def _autocommit(
        self,
        connection,
        cursor,
        sql: Statements,
        update_params: list,
        log_params: list,
        options: dict,
    ) -> bool:
        """The pair as one transaction in autocommit mode: one statement on
        PostgreSQL; on SQLite the transaction by hand (``transaction.atomic()``
        around two short statements costs as much Python as the statements,
        switching autocommit off and on, ~0.15 ms a message). IMMEDIATE takes
        the write lock at once, so the busy timeout applies."""
        if sql.combined:
            return self._execute(cursor, sql, update_params, log_params, options)
        cursor.execute("BEGIN IMMEDIATE")
        try:
            updated = self._execute(cursor, sql, update_params, log_params, options)
            cursor.execute("COMMIT")
        except BaseException:
            _rollback_quietly(connection)
            raise
        return updated

    @staticmethod
    def _execute(
        cursor,
        sql: Statements,
        update_params: list,
        log_params: list,
        options: dict | None = None,
    ) -> bool:
        """Run the pair on ``cursor`` (one statement where the database can);
        True if the message's row was updated (the claim still held)."""
        options = options or {}
        if sql.combined:
            cursor.execute(sql.combined, update_params + log_params, **options)
            return cursor.fetchone()[0] == 1
        cursor.execute(sql.update, update_params, **options)
        updated = cursor.rowcount
        cursor.execute(sql.insert, log_params, **options)
        return updated == 1


def _rollback_quietly(connection) -> None:
    """Roll back the hand-made SQLite transaction, if it is still open.

    SQLite rolls a transaction back by itself on some errors ("database or
    disk is full", SQLITE_FULL; I/O errors; out of memory), and a ROLLBACK
    then fails with "cannot rollback - no transaction is active", which
    must not replace the real error in the worker's report (a full disk
    would be logged as that). The caller re-raises the original error.
    """
    raw = connection.connection
    if raw is not None and not raw.in_transaction:
        return
    try:
        with connection.cursor() as cursor:
            cursor.execute("ROLLBACK")
    except Exception:  # noqa: BLE001 - the original error is what matters
        pass
