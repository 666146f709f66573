"""Carrying a django-mailer database over to ours (used by the migrations).

django-mailer (up to 2.3.2, the last release we test against) keeps three
tables under the same app label as ours, ``mailer``:

- ``mailer_message``: ``message_data`` (text: base64 of a pickled Django
  ``EmailMessage``), ``when_added``, ``priority`` (1 high, 2 medium, 3 low,
  4 "deferred": held, or refused once and waiting for ``retry_deferred``) and,
  since its 0006, ``retry_count``;
- ``mailer_dontsendentry``: ``to_address``, ``when_added``;
- ``mailer_messagelog``: ``message_data`` (the pickle again, or NULL with
  ``MAILER_EMAIL_LOG_MESSAGE_DATA = False``), ``message_id`` (since 0003),
  ``when_added``, ``priority``, ``when_attempted``, ``result`` ("1" success,
  "2" don't send, "3" failure) and ``log_message``.

What this trusts. django-mailer's only stored form of an email is a pickle,
and unpickling runs whatever code the pickle names. We read it because the
rows were written by django-mailer in the site's own database, the same data
django-mailer itself unpickles every time it sends; but we do not trust it
blindly: :class:`EmailUnpickler` resolves only the classes a pickled Django
``EmailMessage`` is made of (``django.core.mail.message``, the standard
library's ``email`` package, a few builtins), and replaces the ``connection``
a message may carry (django-mailer's own ``DbBackend`` object) by an inert
placeholder. A pickle that names anything else is refused
(:class:`UndecodableMessage`), and that row is carried over as a failed
message whose log entry says why, with its data left in the set-aside table:
nothing is silently dropped, nothing else is executed.

Everything else is read with plain SQL on the renamed tables, so the code
works on every database Django supports and on django-mailer databases of
any version since its 0001 (columns added later are read only if present).
"""

from __future__ import annotations

import base64
import binascii
import io
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Any

__all__ = [
    "Converted",
    "UndecodableMessage",
    "convert_email",
    "decode_message_data",
    "import_django_mailer",
    "set_aside",
]

#: django-mailer's table -> where our first migration puts it aside.
ASIDE = {
    "mailer_message": "mailer_djm_message",
    "mailer_dontsendentry": "mailer_djm_dontsendentry",
    "mailer_messagelog": "mailer_djm_messagelog",
}

#: django-mailer's priorities (its ``PRIORITY_*`` constants).
DJM_HIGH, DJM_MEDIUM, DJM_LOW, DJM_DEFERRED = 1, 2, 3, 4

#: django-mailer's log results (its ``RESULT_*`` constants).
DJM_SUCCESS, DJM_DONT_SEND, DJM_FAILURE = "1", "2", "3"

#: A held message's due time (``mailer.queue.HELD_UNTIL``; repeated here so
#: the migration does not depend on the queue module staying as it is).
HELD_UNTIL = datetime(9999, 1, 1, tzinfo=dt_timezone.utc)

#: Rows read and written at once.
CHUNK = 500


class UndecodableMessage(ValueError):
    """django-mailer's ``message_data`` could not be turned into an email."""


class _DiscardedConnection:
    """Stands in for the email backend a pickled email carries as its
    ``connection`` (django-mailer's ``DbBackend`` when mail was queued through
    ``EMAIL_BACKEND``). The engine opens its own connection; this one is
    never used."""

    def __setstate__(self, state: Any) -> None:
        pass


#: Modules (exact, or a package prefix ending in ".") whose classes may
#: appear in a pickled Django ``EmailMessage``.
_ALLOWED_MODULES = (
    "django.core.mail.message",
    "django.core.mail",
    "django.utils.safestring",
    "email.",
    "collections",
)
_ALLOWED_BUILTINS = {
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "bytearray"),
    ("builtins", "list"),
    ("builtins", "dict"),
    ("builtins", "tuple"),
    ("builtins", "str"),
    ("builtins", "bytes"),
    ("builtins", "object"),
    ("copyreg", "_reconstructor"),
    ("_codecs", "encode"),  # bytes in pickle protocols 0-2
}
#: Backend classes replaced by the placeholder (a module path ending in
#: "backend" or "backends...": an email backend, never needed to send).
_CONNECTION_MODULES = ("mailer.backend", "django.core.mail.backends.")


class EmailUnpickler(pickle.Unpickler):
    """An unpickler that builds emails and nothing else (see the module's
    docstring for what it trusts)."""

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith(_CONNECTION_MODULES) or module == "mailer.backend":
            return _DiscardedConnection
        if (module, name) in _ALLOWED_BUILTINS or any(
            module == allowed or (allowed.endswith(".") and module.startswith(allowed))
            for allowed in _ALLOWED_MODULES
        ):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def decode_message_data(data: str | bytes | None) -> Any:
    """Return the Django ``EmailMessage`` that django-mailer stored.

    ``data`` is ``message_data``: base64 of a pickle (django-mailer since
    0.2), or a bare pickle (its oldest releases). Raises
    :class:`UndecodableMessage` naming the problem: empty, not base64, a
    pickle naming a class outside the allow-list, or not an email.
    """
    if data is None or data == "" or data == b"":
        raise UndecodableMessage("no message data")
    raw = data.encode("ascii", "replace") if isinstance(data, str) else bytes(data)
    candidates = []
    try:
        candidates.append(base64.decodebytes(raw))
    except (binascii.Error, ValueError):
        pass
    candidates.append(raw)
    error: Exception | None = None
    for candidate in candidates:
        try:
            email = EmailUnpickler(io.BytesIO(candidate)).load()
        except Exception as exc:  # noqa: BLE001 - every failure is reported
            # The base64 form's error is the telling one.
            error = error or exc
            continue
        if not hasattr(email, "message") or not hasattr(email, "recipients"):
            raise UndecodableMessage(f"not an email: {type(email).__name__}")
        # Through the instance's dict: Django 6.1 deprecates the
        # ``connection`` attribute and warns on any access through it.
        if isinstance(vars(email).get("connection"), _DiscardedConnection):
            vars(email)["connection"] = None
        # Pickled by Django < 6.1, read by 6.1+: the attribute moved.
        vars(email).setdefault("_connection", None)
        return email
    raise UndecodableMessage(f"cannot unpickle the message data: {error}")


@dataclass
class Converted:
    """Our ``Message`` fields for one django-mailer email."""

    to_address: str
    envelope_from: str
    envelope_to: list[str]
    subject: str
    mime: bytes
    message_id: str | None


def convert_email(email: Any, default_from: str) -> Converted:
    """The fields of our ``Message`` for a decoded django-mailer email: the
    RFC 5322 bytes Django builds (exactly what django-mailer would have sent)
    and the envelope, validated like mail entering our queue. Raises
    ``ValueError`` (an ``InvalidAddress`` among them) when it cannot be sent.
    """
    from mailer.addresses import envelope_address
    from mailer.sending.smtp import serialize

    recipients = [envelope_address(r) for r in email.recipients()]
    if not recipients:
        raise ValueError("the email has no recipients")
    envelope_from = envelope_address(email.from_email or default_from)
    data, message_id = serialize(email)
    return Converted(
        to_address=recipients[0],
        envelope_from=envelope_from,
        envelope_to=recipients,
        subject=" ".join(str(email.subject).split())[:255],
        mime=data,
        message_id=message_id[:255] or None,
    )


def _recipient_and_subject(data: str | None) -> tuple[str, str]:
    """For a log row: the first recipient and the subject, or blanks when the
    log kept no data (``MAILER_EMAIL_LOG_MESSAGE_DATA = False``) or it cannot
    be read. The body is not carried over: our log keeps none."""
    try:
        email = decode_message_data(data)
        recipients = email.recipients()
        return (recipients[0] if recipients else "")[:320], " ".join(
            str(email.subject).split()
        )[:255]
    except Exception:  # noqa: BLE001 - a log row without them is still kept
        return "", ""


# -- the migrations' operations -------------------------------------------------


def _columns(connection, cursor, table: str) -> set[str]:
    return {
        c.name for c in connection.introspection.get_table_description(cursor, table)
    }


def is_django_mailer_schema(connection) -> bool:
    """True when ``mailer_message`` is django-mailer's (it has
    ``message_data``, which ours never had)."""
    with connection.cursor() as cursor:
        if "mailer_message" not in connection.introspection.table_names(cursor):
            return False
        return "message_data" in _columns(connection, cursor, "mailer_message")


def set_aside(apps, schema_editor) -> None:
    """First step of our first migration: rename django-mailer's tables out
    of the way (nothing is deleted), so ours can be created under the same
    names. Does nothing on a fresh database or one without them."""
    connection = schema_editor.connection
    if not is_django_mailer_schema(connection):
        _refuse_our_prerelease_schema(connection)
        return
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        existing = set(connection.introspection.table_names(cursor))
    for old, new in ASIDE.items():
        if old in existing and new not in existing:
            schema_editor.execute(f"ALTER TABLE {quote(old)} RENAME TO {quote(new)}")


def _refuse_our_prerelease_schema(connection) -> None:
    """A database made by our own pre-release, whose first migration was
    called ``0001_initial``, already has our tables: creating them again
    would fail with a bare "table already exists". Say what to do instead."""
    with connection.cursor() as cursor:
        if "mailer_message" not in connection.introspection.table_names(cursor):
            return
        if "claim_token" not in _columns(connection, cursor, "mailer_message"):
            return
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        "The mailer tables already exist in this database (made by a "
        "pre-release of django-mailer-jobs whose first migration was "
        "0001_initial). Record our renamed migrations as applied instead: "
        "python manage.py migrate mailer 0002_from_django_mailer --fake"
    )


def _rows(cursor, table: str, columns: list[str], quote) -> Iterator[dict]:
    cols = ", ".join(quote(c) for c in columns)
    last = None
    while True:
        if last is None:
            cursor.execute(
                f"SELECT {cols} FROM {quote(table)} ORDER BY {quote('id')}"  # noqa: S608
                f" {_limit(CHUNK)}"
            )
        else:
            cursor.execute(
                f"SELECT {cols} FROM {quote(table)} WHERE {quote('id')} > %s"  # noqa: S608
                f" ORDER BY {quote('id')} {_limit(CHUNK)}",
                [last],
            )
        rows = cursor.fetchall()
        if not rows:
            return
        for row in rows:
            yield dict(zip(columns, row, strict=True))
        last = rows[-1][0]


def _limit(n: int) -> str:
    return f"LIMIT {int(n)}"


def _aware(value: Any, connection) -> datetime | None:
    """A datetime read by raw SQL, as an aware UTC datetime (SQLite returns
    text, PostgreSQL an aware datetime)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt_timezone.utc)
    return value


def import_django_mailer(apps, schema_editor) -> None:
    """Second migration: copy the set-aside tables into ours, then drop them.

    Ids are kept (our tables are new, so they are free), which makes the copy
    resumable where a migration cannot be one transaction: a rerun skips the
    ids already copied. On SQLite and PostgreSQL the whole migration is one
    transaction anyway. Queued mail keeps its content, priority, order
    (``due_at`` = django-mailer's ``when_added``) and retry count; priority 4
    ("deferred") becomes our held state (status deferred, due only after
    ``retry_deferred``), at medium priority, the one django-mailer's
    ``retry_deferred`` gives it back.
    """
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        tables = set(connection.introspection.table_names(cursor))
    if not tables & set(ASIDE.values()):
        return
    from django.conf import settings

    Message = apps.get_model("mailer", "Message")
    MessageLog = apps.get_model("mailer", "MessageLog")
    DontSendEntry = apps.get_model("mailer", "DontSendEntry")
    db = connection.alias
    quote = connection.ops.quote_name
    default_from = settings.DEFAULT_FROM_EMAIL
    undecodable: list[int] = []
    logs: list = []

    with connection.cursor() as cursor:
        table = ASIDE["mailer_message"]
        if table in tables:
            present = _columns(connection, cursor, table)
            columns = ["id", "message_data", "when_added", "priority"]
            if "retry_count" in present:
                columns.append("retry_count")
            batch: list = []
            for row in _rows(connection.cursor(), table, columns, quote):
                message, log = _convert_message(
                    row, connection, default_from, Message, MessageLog
                )
                if log is not None:
                    undecodable.append(row["id"])
                    logs.append(log)
                batch.append(message)
                if len(batch) >= CHUNK:
                    _insert_new(Message, batch, db)
                    batch = []
            _insert_new(Message, batch, db)

        table = ASIDE["mailer_dontsendentry"]
        if table in tables:
            known = set(
                DontSendEntry._default_manager.using(db).values_list(
                    "address", flat=True
                )
            )
            entries = []
            from mailer.addresses import normalize

            for row in _rows(
                connection.cursor(), table, ["id", "to_address", "when_added"], quote
            ):
                address = normalize(row["to_address"] or "")
                if not address or address in known:
                    continue  # django-mailer allowed duplicates; we keep one
                known.add(address)
                entries.append(
                    DontSendEntry(
                        address=address,
                        reason="manual",
                        note="carried over from django-mailer",
                        created_at=_aware(row["when_added"], connection),
                    )
                )
            DontSendEntry._default_manager.using(db).bulk_create(
                entries, batch_size=CHUNK
            )

        table = ASIDE["mailer_messagelog"]
        if table in tables:
            present = _columns(connection, cursor, table)
            columns = ["id", "when_attempted", "result", "log_message"]
            columns += [c for c in ("message_data", "message_id") if c in present]
            batch = []
            for row in _rows(connection.cursor(), table, columns, quote):
                batch.append(_convert_log(row, connection, MessageLog))
                if len(batch) >= CHUNK:
                    _insert_new(MessageLog, batch, db)
                    batch = []
            _insert_new(MessageLog, batch, db)

    _reset_sequences(connection, [Message, MessageLog])
    # After the copied log ids are taken and the sequence moved past them:
    # these rows get new ids.
    _insert_new(MessageLog, logs, db, key="message_pk")

    # Drop what has been copied. Messages that could not be decoded keep
    # their row in the set-aside table (their data is nowhere else).
    for old, aside in ASIDE.items():
        if aside not in tables:
            continue
        if old == "mailer_message" and undecodable:
            placeholders = ", ".join(["%s"] * len(undecodable))
            schema_editor.execute(
                f"DELETE FROM {quote(aside)} WHERE {quote('id')} "  # noqa: S608
                f"NOT IN ({placeholders})",
                undecodable,
            )
            continue
        schema_editor.execute(f"DROP TABLE {quote(aside)}")


def _convert_message(row: dict, connection, default_from: str, Message, MessageLog):
    """One django-mailer queue row -> (our Message, a log row if it failed)."""
    when_added = _aware(row["when_added"], connection)
    priority = int(row["priority"])
    attempts = max(0, int(row.get("retry_count") or 0))
    held = priority == DJM_DEFERRED
    common = {
        "id": row["id"],
        "priority": DJM_MEDIUM if held or priority not in (1, 2, 3) else priority,
        "attempts": min(attempts, 32767),
        "created_at": when_added,
    }
    try:
        email = decode_message_data(row["message_data"])
        converted = convert_email(email, default_from)
    except Exception as error:  # noqa: BLE001 - reported on the row, never dropped
        reason = (
            f"django-mailer message {row['id']} could not be carried over: {error}"
            f"; its data stays in table {ASIDE['mailer_message']}"
        )
        message = Message(
            **common,
            status=3,  # failed
            due_at=None,
            to_address="",
            subject=f"(django-mailer message {row['id']})",
        )
        log = MessageLog(
            message_pk=row["id"], recipient="", result=3, reply=reason[:2000]
        )
        return message, log
    return (
        Message(
            **common,
            status=1 if held else 0,  # deferred (held) / queued
            due_at=HELD_UNTIL if held else when_added,
            to_address=converted.to_address,
            envelope_from=converted.envelope_from,
            envelope_to=converted.envelope_to,
            subject=converted.subject,
            mime=converted.mime,
            message_id=converted.message_id,
        ),
        None,
    )


def _convert_log(row: dict, connection, MessageLog):
    recipient, subject = _recipient_and_subject(row.get("message_data"))
    result = {
        DJM_SUCCESS: 1,  # sent
        DJM_DONT_SEND: 4,  # suppressed
        # django-mailer's "failure" is an attempt after which the message was
        # deferred (it never gives up by itself): our "deferred".
        DJM_FAILURE: 2,
    }.get(str(row["result"]), 3)
    return MessageLog(
        id=row["id"],
        recipient=recipient,
        subject=subject,
        result=result,
        reply=row["log_message"] or "",
        message_id=(row.get("message_id") or "")[:255],
        created_at=_aware(row["when_attempted"], connection),
    )


def _insert_new(model, objects: list, db: str, key: str = "id") -> None:
    """Insert the objects whose ``key`` is not in the table yet (a rerun after
    an interrupted, non-transactional migration skips what it copied)."""
    if not objects:
        return
    values = [getattr(o, key) for o in objects]
    existing = set(
        model._default_manager.using(db)
        .filter(**{f"{key}__in": values})
        .values_list(key, flat=True)
    )
    new = [o for o in objects if getattr(o, key) not in existing]
    model._default_manager.using(db).bulk_create(new, batch_size=CHUNK)


def _reset_sequences(connection, models: list) -> None:
    """Explicit ids leave PostgreSQL's identity sequences behind; move them
    past the copied ids (a no-op on SQLite)."""
    from django.core.management.color import no_style

    statements = connection.ops.sequence_reset_sql(no_style(), models)
    if statements:
        with connection.cursor() as cursor:
            for sql in statements:
                cursor.execute(sql)
