"""A full disk while recording an outcome (issue 12 item 9): the run reports
the database's own error, not "cannot rollback - no transaction is active"
from the rollback that followed it. Simulated on SQLite with ``PRAGMA
max_page_count``: the database may not grow by one page more."""

from __future__ import annotations

import pytest
from django.db import OperationalError, connection

from mailer.models import Message, MessageLog, MessageStatus
from mailer.sending import engine
from tests.faultlib import addresses, fill_single

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "sqlite", reason="PRAGMA max_page_count is SQLite's"
    ),
]


def pragma(sql: str):
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()


def fill_log_to_the_brim() -> None:
    """Freeze the file's size, then add log rows, big then small, until
    not even a small one fits: the next outcome's log row cannot be written."""
    pages = pragma("PRAGMA page_count")[0]
    pragma(f"PRAGMA max_page_count = {pages}")
    for size in (2000, 500, 100, 20, 1):
        for _ in range(10_000):
            try:
                MessageLog.objects.create(recipient="x", result=1, reply="r" * size)
            except OperationalError:
                break


def test_a_full_disk_is_reported_as_such(mailserver, monkeypatch):
    # No retry: a retry reconnects, and the new connection has no page limit.
    monkeypatch.setattr(engine, "RECORD_RETRY_DELAYS", ())
    fill_single(addresses(3, "full"))
    before = MessageLog.objects.count()
    try:
        fill_log_to_the_brim()
        result = engine.send_queued()
    finally:
        pragma("PRAGMA max_page_count = 1073741823")

    assert result.stop_reason == "database error"
    assert result.error == "database error: database or disk is full"
    assert "cannot rollback" not in result.error
    # The email went out; its outcome could not be written and was rolled
    # back whole: the message keeps its claim (it goes out again after the
    # lease, the one allowed duplicate), nothing half-recorded.
    assert mailserver.count == 1
    first = Message.all_objects.order_by("id").first()
    assert (first.status, first.attempts) == (MessageStatus.QUEUED, 0)
    assert first.claim_token is not None
    assert not MessageLog.objects.filter(recipient=first.to_address).exists()
    assert MessageLog.objects.count() >= before
