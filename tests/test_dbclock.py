"""mailer.dbclock: the database's now against the times this process stamps.

SQLite's ``'now'`` has whole milliseconds; ``timezone.now()`` has
microseconds. A message queued "due now" and claimed in the same millisecond
compared after the claim's now, and the run that should have sent it sent
nothing (seen in CI: one run in twenty of two tests that queue, then send).
"""

from __future__ import annotations

from datetime import datetime
from datetime import timezone as dt_timezone

import pytest
from django.db import connection
from django.utils import timezone

import mailer
from mailer.dbclock import now_plus_sql, offset_param
from mailer.models import Message

pytestmark = pytest.mark.django_db

TRIES = 300  # bounded: each is one SELECT


def test_a_time_stamped_before_the_statement_is_never_after_its_upper_bound():
    sql = f"SELECT %s <= {now_plus_sql(connection.vendor, upper_bound=True)}"
    late = []
    with connection.cursor() as cursor:
        for _ in range(TRIES):
            stamped = timezone.now()
            value = connection.ops.adapt_datetimefield_value(stamped)
            cursor.execute(sql, [value, offset_param(connection.vendor, 0.0)])
            if not cursor.fetchone()[0]:
                late.append(stamped)
    assert late == []


def test_the_time_the_database_stamps_is_never_ahead_of_the_clock():
    """The plain reading (leases, due times, log times the database writes)
    is not rounded up: compared with this process's clock read just after
    the statement, it is never in the future."""
    sql = f"SELECT {now_plus_sql(connection.vendor)}"
    ahead = []
    with connection.cursor() as cursor:
        for _ in range(TRIES):
            cursor.execute(sql, [offset_param(connection.vendor, 0.0)])
            read = cursor.fetchone()[0]
            after = timezone.now()
            if isinstance(read, str):  # SQLite: text, in UTC as Django stores it
                read = datetime.fromisoformat(read).replace(tzinfo=dt_timezone.utc)
            if read > after:
                ahead.append((read, after))
    assert ahead == []


def test_mail_queued_due_now_is_due_at_once():
    for number in range(TRIES // 3):
        to = [f"r{number}@example.com"]
        mailer.send_mail("Reset", "link", "site@example.com", to)
        newest = Message.all_objects.order_by("-id")[:1]
        assert Message.all_objects.due().filter(pk__in=newest).exists()
