"""The database's clock: one clock for every worker on every host.

Rate windows and relay pauses are shared by workers whose own clocks may
disagree by seconds or minutes; reading the time from the database they all
write to makes "this second's window" mean the same second for all of them.
"""

from __future__ import annotations

from datetime import datetime, timezone

from django.db import connections
from django.utils import timezone as django_timezone


def database_now(using: str = "default") -> datetime:
    """The database server's current time (aware, UTC), to the millisecond
    or better.

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
        return django_timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(sql)
        value = cursor.fetchone()[0]
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)
