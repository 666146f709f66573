"""The outcome write (``mailer/sending/records.py``) on the driver's own
cursor, as ``send_mail`` runs it (autocommit, nothing watching the queries).
The claim-token guard and the transaction paths are in
tests/system/test_guards.py."""

from __future__ import annotations

import pytest
from django.db import connection

import mailer
from mailer.models import LogResult, Message, MessageLog, MessageStatus
from mailer.sending.claim import claim_batch
from mailer.sending.records import OutcomeWriter

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]


def write(writer: OutcomeWriter, pk: int, token: str, **outcome) -> bool:
    values = {
        "status": MessageStatus.SENT,
        "attempts_added": 1,
        "due_in": None,
        "message_id": None,
        "provider_id": None,
        "result": LogResult.SENT,
        "smtp_code": 250,
        "reply": "2.0.0 queued",
        "attempt": 1,
    }
    values.update(outcome)
    return writer.write(message=Message.all_objects.get(pk=pk), token=token, **values)


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="server-side binding: psycopg 3"
)
def test_on_postgresql_the_values_are_bound_on_the_server_not_quoted_into_the_sql():
    """Django's psycopg cursor binds values on the client (quoting each into
    the SQL text, ~0.1 ms of Python a message); the writer sends the
    statement with ``$n`` placeholders and the values apart (and prepares it
    where the project enabled prepared statements). A second connection
    reads the worker's last statement from ``pg_stat_activity``. Values of
    every shape (NULL due time and SMTP code, a due time, a Message-ID) land
    in the rows."""
    mailer.send_mass_mail(
        [
            (f"Hello {i}", "Body", "news@example.com", [f"r{i}@example.com"])
            for i in range(3)
        ]
    )
    token, pks = claim_batch(3)
    writer = OutcomeWriter()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        [pid] = cursor.fetchone()

    assert write(writer, pks[0], token) is True
    assert write(
        writer,
        pks[1],
        token,
        status=MessageStatus.DEFERRED,
        due_in=60.0,
        result=LogResult.DEFERRED,
        smtp_code=None,
        reply="connection refused",
    )
    assert write(writer, pks[2], token, message_id="<m2@example.com>") is True

    other = connection.get_new_connection(connection.get_connection_params())
    try:
        [[last]] = other.execute(
            "SELECT query FROM pg_stat_activity WHERE pid = %s", [pid]
        ).fetchall()
    finally:
        other.close()
    assert last.startswith("WITH updated AS (UPDATE"), last
    assert "$1" in last and "<m2@example.com>" not in last, last
    rows = Message.all_objects.in_bulk(pks)
    assert [rows[pk].status for pk in pks] == [
        MessageStatus.SENT,
        MessageStatus.DEFERRED,
        MessageStatus.SENT,
    ]
    assert rows[pks[1]].due_at is not None and rows[pks[0]].due_at is None
    assert rows[pks[2]].message_id == "<m2@example.com>"
    assert list(
        MessageLog.objects.order_by("id").values_list("message_pk", "smtp_code")
    ) == [(pks[0], 250), (pks[1], None), (pks[2], 250)]
