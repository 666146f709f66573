"""One clock for every worker: the database's.

Leases, due times and retries are computed and compared *in SQL* with the
database server's ``now()``, never with a worker's own clock: two hosts whose
clocks differ by a minute (or a clock stepped back by NTP) then still agree on
who owns a message and when it is due. The worker's clock is used only to
measure durations (``time.monotonic()``), never to stamp a time another
worker compares.

:class:`DbNow` is Django's ``Now()`` plus an offset in seconds:

- PostgreSQL: ``STATEMENT_TIMESTAMP() + n * INTERVAL '1 second'`` (a
  ``timestamp with time zone``, as Django declares every ``DateTimeField``
  there, so ``USE_TZ = False`` changes nothing).
- SQLite: ``STRFTIME('%Y-%m-%d %H:%M:%f', 'now', ['localtime',] '+n
  seconds')``, text in the format Django stores; for "is it due" rounded up
  to the millisecond (``upper_bound``; :func:`sqlite_now` says why). SQLite's ``'now'``
  is UTC, which is what Django stores with ``USE_TZ = True``; with
  ``USE_TZ = False`` Django stores naive local times of ``TIME_ZONE`` (it
  sets the process's ``TZ`` to it), and ``'localtime'`` converts to that.
  (Django's own ``Now()`` leaves this out: with ``USE_TZ = False`` on
  SQLite it is off by the UTC offset.)
- Other databases: the worker's clock, as Django's ``Now()`` plus a Python
  ``timedelta`` would have it; one clock there is the operator's (NTP) job.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

from django.conf import settings as django_settings
from django.db import connections
from django.db.models import DateTimeField, Func, Value
from django.utils import timezone

__all__ = [
    "DbNow",
    "now_plus_sql",
    "offset_param",
    "database_now",
    "database_now_utc",
    "for_field",
]

#: SQLite's text timestamp, as Django stores datetimes there ("%%": the
#: statement goes through Django's %s-to-? conversion).
_SQLITE_FORMAT = "'%%Y-%%m-%%d %%H:%%M:%%f'"


def _seconds(offset: float | timedelta) -> float:
    if isinstance(offset, timedelta):
        return offset.total_seconds()
    return float(offset)


def sqlite_now(offset_param: str = "%s", *, upper_bound: bool = False) -> str:
    """SQL for "the database's now plus ``offset_param``" on SQLite; the
    parameter is a modifier such as ``'+15.000 seconds'`` (see
    :func:`sqlite_offset`), NULL giving NULL.

    SQLite's ``'now'`` is the clock cut down to the millisecond, while the
    times Python stamps (``timezone.now()``: a job's ``send_at``, a due time
    set by hand) carry microseconds. Stamped in the same millisecond as a
    claim ran, such a time compared *after* that claim's now, and a message
    due a moment before a run was left for the next one. ``upper_bound``:
    now rounded up to the next millisecond (``'+0.001 seconds'``), never
    earlier than a time stamped before the statement, for the "is it due
    yet" comparison (``Message.objects.due()``). Times the database stamps
    keep the plain reading, so they are never ahead of the clock either.
    """
    local = "" if django_settings.USE_TZ else "'localtime', "
    up = "'+0.001 seconds', " if upper_bound else ""
    return f"STRFTIME({_SQLITE_FORMAT}, 'now', {up}{local}{offset_param})"


def sqlite_offset(seconds: float | None) -> str | None:
    return None if seconds is None else f"{seconds:+.6f} seconds"


POSTGRESQL_NOW = (
    "(STATEMENT_TIMESTAMP() + CAST(%s AS double precision) * INTERVAL '1 second')"
)


class DbNow(Func):
    """The database server's current time plus ``offset`` (seconds or a
    ``timedelta``, may be negative), as a ``DateTimeField`` expression for
    filters and updates: ``due_at__lte=DbNow(upper_bound=True)``,
    ``update(due_at=DbNow(timedelta(seconds=conf.MAILER_LEASE_SECONDS)))``.

    ``upper_bound``: the latest the time can be, for comparing with times
    this process stamped; on SQLite, whose clock reads whole milliseconds,
    one millisecond more (see :func:`sqlite_now`)."""

    output_field = DateTimeField()
    arity = 0

    def __init__(
        self, offset: float | timedelta = 0, *, upper_bound: bool = False, **extra: Any
    ) -> None:
        self.offset = _seconds(offset)
        self.upper_bound = upper_bound
        super().__init__(**extra)

    def as_sql(self, compiler, connection, **extra_context):  # other databases
        value = Value(timezone.now() + timedelta(seconds=self.offset))
        value.output_field = DateTimeField()
        return compiler.compile(value)

    def as_postgresql(self, compiler, connection, **extra_context):
        return POSTGRESQL_NOW, (self.offset,)

    def as_sqlite(self, compiler, connection, **extra_context):
        return sqlite_now(upper_bound=self.upper_bound), (sqlite_offset(self.offset),)


def now_plus_sql(vendor: str, *, upper_bound: bool = False) -> str | None:
    """For hand-written statements (``mailer.sending.records``): SQL with one ``%s``
    parameter, the offset (from :func:`offset_param`), giving the database's
    now plus that offset, or NULL for a NULL parameter (``upper_bound`` as
    for :class:`DbNow`). ``None`` for databases without one (the caller then
    passes a datetime)."""
    if vendor == "postgresql":
        return POSTGRESQL_NOW
    if vendor == "sqlite":
        return sqlite_now(upper_bound=upper_bound)
    return None


def offset_param(vendor: str, seconds: float | None) -> Any:
    """The parameter :func:`now_plus_sql` takes for ``seconds``."""
    if vendor == "sqlite":
        return sqlite_offset(seconds)
    return seconds


def database_now(using: str = "default") -> datetime:
    """The database server's current time as a Python ``datetime``, for
    values computed in Python and then stored in or compared with model
    fields by every worker (relay pauses, retry deadlines, job expiry).

    Aware UTC with ``USE_TZ = True``; naive in ``TIME_ZONE`` with
    ``USE_TZ = False``, as Django stores it then. See
    :func:`database_now_utc`.
    """
    value = database_now_utc(using)
    return value if django_settings.USE_TZ else timezone.make_naive(value)


def database_now_utc(using: str = "default") -> datetime:
    """The database server's current time, aware, in UTC, to the
    millisecond or better, whatever ``USE_TZ`` says (rate windows are
    aligned on the epoch in UTC).

    PostgreSQL: ``clock_timestamp()`` (not ``now()``, which is frozen at the
    start of a transaction). SQLite: ``strftime('%f')`` of ``'now'`` (UTC;
    ``CURRENT_TIMESTAMP`` has whole seconds only, too coarse for a
    per-second window). Other databases: this process's clock.
    """
    connection = connections[using]
    if connection.vendor == "postgresql":
        sql = "SELECT clock_timestamp()"
    elif connection.vendor == "sqlite":
        sql = "SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')"
    else:
        return datetime.now(dt_timezone.utc)
    with connection.cursor() as cursor:
        cursor.execute(sql)
        value = cursor.fetchone()[0]
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        # SQLite's 'now' is UTC; PostgreSQL returns naive values only with
        # USE_TZ = False, in the connection's time zone (TIME_ZONE).
        if connection.vendor == "sqlite":
            return value.replace(tzinfo=dt_timezone.utc)
        return timezone.make_aware(value).astimezone(dt_timezone.utc)
    return value.astimezone(dt_timezone.utc)


def for_field(value: datetime) -> datetime:
    """``value`` (aware) as Django stores a ``DateTimeField`` under the
    project's ``USE_TZ``: unchanged, or naive in ``TIME_ZONE``."""
    if django_settings.USE_TZ or timezone.is_naive(value):
        return value
    return timezone.make_naive(value)
