"""Writing one attempt's outcome: the per-message database work of the send
loop, kept to one short transaction of two statements (one statement on
PostgreSQL).

The raw SQL here (like ``expand.MessageInserter``'s) is for speed: the ORM's
``filter().update()`` plus ``objects.create()`` cost several hundred
microseconds of Python per message, as much as sending the message to a
local server. The statements are composed once per run from the models'
metadata (table and column names, the backend's quoting and value
adaptation), so they follow the models and work on every backend Django
supports.
"""

from __future__ import annotations

from datetime import datetime

from django.db import connections, router, transaction

from mailer.models import Message, MessageLog


def _columns(model, names: list[str]) -> list[str]:
    return [model._meta.get_field(name).column for name in names]


class OutcomeWriter:
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
        # The claim token in the WHERE clause: a worker whose lease ran out and
        # whose message was taken over writes nothing over the new owner's
        # state (the log row still records what this worker did).
        self.update_sql = (
            f"UPDATE {quote(Message._meta.db_table)} SET "
            f"{m['status']} = %s, {m['claim_token']} = NULL, "
            f"{m['attempts']} = {m['attempts']} + %s, "
            f"{m['due_at']} = %s, "
            f"{m['message_id']} = COALESCE(%s, {m['message_id']}), "
            f"{m['provider_id']} = COALESCE(%s, {m['provider_id']}) "
            f"WHERE {m['id']} = %s AND {m['claim_token']} = %s"
        )
        log_columns = ", ".join(quote(c) for c in _columns(MessageLog, self.LOG_FIELDS))
        placeholders = ", ".join(["%s"] * len(self.LOG_FIELDS))
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

    def write(
        self,
        *,
        message: Message,
        token: str,
        status: int,
        attempts_added: int,
        due_at: datetime | None,
        message_id: str | None,
        provider_id: str | None,
        result: int,
        smtp_code: int | None,
        reply: str,
        attempt: int,
        now: datetime,
    ) -> bool:
        """Record the outcome; return False if the claim had been lost."""
        adapt = self.ops.adapt_datetimefield_value
        update_params = [
            status,
            attempts_added,
            adapt(due_at) if due_at is not None else None,
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
            adapt(now),
        ]
        connection = connections[self.db]
        autocommit = connection.get_autocommit()
        if self.combined_sql and autocommit:
            with connection.cursor() as cursor:
                cursor.execute(self.combined_sql, update_params + log_params)
                return cursor.fetchone()[0] == 1
        if connection.vendor == "sqlite" and autocommit:
            # The transaction by hand: transaction.atomic() around two short
            # statements costs as much Python as the statements (switching
            # autocommit off and on), ~0.15 ms a message. IMMEDIATE takes the
            # write lock at once, so the busy timeout applies.
            with connection.cursor() as cursor:
                cursor.execute("BEGIN IMMEDIATE")
                try:
                    cursor.execute(self.update_sql, update_params)
                    updated = cursor.rowcount
                    cursor.execute(self.insert_sql, log_params)
                except BaseException:
                    cursor.execute("ROLLBACK")
                    raise
                cursor.execute("COMMIT")
            return updated == 1
        # Inside the caller's transaction (a test, a custom runner), or
        # another database: a transaction (or savepoint) keeps the pair atomic.
        with transaction.atomic(using=self.db):
            with connection.cursor() as cursor:
                cursor.execute(self.update_sql, update_params)
                updated = cursor.rowcount
                cursor.execute(self.insert_sql, log_params)
        return updated == 1
