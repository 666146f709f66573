"""Outcomes committed behind the sending (``mailer.sending.writebehind``):
on PostgreSQL a run over one connection sends each outcome's statement on a
second database connection and goes on with the next message's envelope,
but never hands the next message's content to the relay before that commit
is answered.

The real test SMTP server and the suite's PostgreSQL server; the database is
made slow where a test needs it (a trigger that sleeps in every log insert),
and a write's connection is killed with ``pg_terminate_backend``.
"""

from __future__ import annotations

from collections import Counter

import pytest
from django.db import connection, transaction

from mailer.models import LogResult, Message, MessageLog, MessageStatus
from mailer.sending import writebehind
from mailer.sending.engine import send_queued
from mailer.sending.writebehind import WriteBehind, numbered
from tests.faultlib import addresses, deliveries, fill_job, fill_single, wait_until

# The outcomes' connection sees committed rows only.
pytestmark = pytest.mark.django_db(transaction=True)

postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="outcomes are committed behind on PostgreSQL only (the SQLite run "
    "checks that they are not)",
)


def test_placeholders_are_numbered_for_libpq():
    sql = "UPDATE t SET a = %s, b = b + %s WHERE c LIKE 'x%%' AND d = %s"
    assert numbered(sql) == (
        "UPDATE t SET a = $1, b = b + $2 WHERE c LIKE 'x%' AND d = $3"
    )
    assert numbered("SELECT 1") == "SELECT 1"


def test_parameters_go_as_postgresql_text():
    text = writebehind._text
    assert text(None) is None
    assert text(LogResult.SENT) == str(int(LogResult.SENT)).encode()
    assert text(-3) == b"-3"
    assert text(0.25) == b"0.25"
    assert text("Zoë <z@example.com>") == "Zoë <z@example.com>".encode()


def test_only_postgresql_outside_a_transaction_commits_behind():
    assert WriteBehind.usable("default") is (connection.vendor == "postgresql")
    with transaction.atomic():
        # Rows of an open transaction are invisible to another connection.
        assert WriteBehind.usable("default") is False


def side_connection():
    """A database connection of the test's own, in autocommit, for the SMTP
    server's thread to look at (or act on) the database with."""
    side = connection.get_new_connection(connection.get_connection_params())
    side.autocommit = True
    return side


def send_watched(server, on_message, side) -> object:
    """``send_queued()`` with ``on_message`` called in the server's thread
    for each message it receives; ``side`` is closed afterwards."""
    server.on_message = on_message
    try:
        return send_queued()
    finally:
        server.on_message = None
        side.close()


@pytest.fixture
def sends(monkeypatch):
    """How many outcomes went out behind (a counting wrapper around the real
    ``WriteBehind.send``)."""
    calls = []
    real = WriteBehind.send

    def counting(self, values, params):
        calls.append(values["message"].to_address)
        return real(self, values, params)

    monkeypatch.setattr(WriteBehind, "send", counting)
    return calls


@pytest.fixture
def slow_log_inserts():
    """Every MessageLog insert sleeps 20 ms in the database: a commit far
    slower than the next message's envelope, so the engine's wait before the
    content is what keeps the order."""
    table = MessageLog._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE OR REPLACE FUNCTION mailer_test_slow_log() RETURNS trigger "
            "AS $$ BEGIN PERFORM pg_sleep(0.02); RETURN NEW; END $$ "
            "LANGUAGE plpgsql"
        )
        cursor.execute(
            f"CREATE TRIGGER mailer_test_slow_log BEFORE INSERT ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION mailer_test_slow_log()"
        )
    yield
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TRIGGER mailer_test_slow_log ON {table}")
        cursor.execute("DROP FUNCTION mailer_test_slow_log()")


@postgresql_only
def test_no_message_is_handed_over_before_the_previous_outcome_is_committed(
    mailserver, sends, slow_log_inserts
):
    """At each message the server receives, every message it received before
    is already recorded as sent, as seen from a third connection: kill -9
    at any moment leaves at most the one message in flight unrecorded."""
    recipients = addresses(25, "order-single") + addresses(25, "order-job")
    fill_single(recipients[:25])
    fill_job(recipients[25:])
    watcher = side_connection()
    received: list[str] = []
    unrecorded: list[int] = []

    def check(email):
        if received:
            row = watcher.execute(
                f"SELECT count(*) FROM {Message._meta.db_table} "
                "WHERE to_address = ANY(%s) AND status <> %s",
                [received, int(MessageStatus.SENT)],
            ).fetchone()
            unrecorded.append(row[0])
        received.extend(email.rcpt_tos)

    result = send_watched(mailserver, check, watcher)

    assert (result.sent, result.error) == (50, None)
    assert sorted(Counter(deliveries(mailserver)).values()) == [1] * 50
    assert len(sends) == 50  # every outcome went out behind
    assert len(unrecorded) == 49
    assert max(unrecorded) == 0
    assert MessageLog.objects.filter(result=LogResult.SENT).count() == 50


@postgresql_only
def test_a_killed_outcome_connection_is_written_again_on_the_workers_own(
    mailserver, sends
):
    """The database ends the outcomes' connection mid-run (an administrator,
    a failover): the pending outcome is written again on the worker's own
    connection, the rest of the run commits in line, and it goes on: each
    email delivered once, each message sent."""
    recipients = addresses(60, "killed-writer")
    fill_single(recipients)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        workers_own = cursor.fetchone()[0]  # send_queued() runs in this thread
    killer = side_connection()
    killed: list[int] = []

    def kill_the_writer(email):
        if mailserver.count == 20:
            rows = killer.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND pid <> %s AND query LIKE 'WITH updated AS%%'",
                [workers_own],
            ).fetchall()
            killed.append(len(rows))

    result = send_watched(mailserver, kill_the_writer, killer)

    assert killed == [1]  # the outcomes' connection, not the worker's own
    assert (result.sent, result.error) == (60, None)
    assert sorted(Counter(deliveries(mailserver)).values()) == [1] * 60
    assert not Message.all_objects.exclude(status=MessageStatus.SENT).exists()
    per_message = MessageLog.objects.filter(result=LogResult.SENT).values_list(
        "message_pk", flat=True
    )
    # Written again after a kill: the attempt may be logged twice, never lost.
    assert set(per_message) == set(Message.all_objects.values_list("pk", flat=True))
    assert len(per_message) <= 61
    assert 19 <= len(sends) <= 21  # then in line


@postgresql_only
def test_the_outcomes_connection_is_closed_when_the_run_ends(mailserver, sends):
    fill_single(addresses(10, "closed"))
    result = send_queued()
    assert (result.sent, len(sends)) == (10, 10)

    def writers() -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND query LIKE 'WITH updated AS%%'"
            )
            return cursor.fetchone()[0]

    # A closed connection may stay listed a moment after its client hung up.
    assert wait_until(lambda: writers() == 0, 5)


def test_the_setting_turns_it_off(mailserver, sends, settings):
    settings.MAILER_WRITE_BEHIND = False
    fill_single(addresses(10, "off"))
    result = send_queued()
    assert (result.sent, result.error) == (10, None)
    assert sends == []
    assert sorted(Counter(deliveries(mailserver)).values()) == [1] * 10


def test_sqlite_and_pooled_runs_commit_at_once(mailserver, sends):
    """SQLite always commits at once; on PostgreSQL a run over several
    connections does too (its connections already wait side by side)."""
    fill_single(addresses(12, "pooled"))
    result = send_queued(connections=3)
    assert (result.sent, result.error) == (12, None)
    assert sends == []
    assert sorted(Counter(deliveries(mailserver)).values()) == [1] * 12


@postgresql_only
def test_a_slow_commit_sends_the_next_message_afresh(mailserver, sends):
    """One commit takes 0.6 s, longer than the margin the next message's
    lease and deadline were checked with: that message's content is not sent
    after the wait. Its connection is closed (the relay drops the open
    transaction), the lease is checked again, and it goes out afresh on a
    new connection, the rest of the run committing in line: each email
    once, none in doubt."""
    table = MessageLog._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE OR REPLACE FUNCTION mailer_test_late_log() RETURNS trigger "
            "AS $$ BEGIN IF NEW.recipient LIKE 'late-slow%' THEN "
            "PERFORM pg_sleep(0.6); END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
        )
        cursor.execute(
            f"CREATE TRIGGER mailer_test_late_log BEFORE INSERT ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION mailer_test_late_log()"
        )
    try:
        fill_single(addresses(3, "late-a") + addresses(1, "late-slow"))
        fill_single(addresses(3, "late-b"))
        result = send_queued()
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TRIGGER mailer_test_late_log ON {table}")
            cursor.execute("DROP FUNCTION mailer_test_late_log()")

    assert (result.sent, result.in_doubt, result.error) == (7, 0, None)
    assert sorted(Counter(deliveries(mailserver)).values()) == [1] * 7
    # The message after the slow commit went out on a second connection.
    assert mailserver.connections == 2
    assert len(sends) == 4  # up to the slow one, then in line
    assert not Message.all_objects.exclude(status=MessageStatus.SENT).exists()


@postgresql_only
def test_a_slow_relay_that_resets_after_data_and_odd_values(mailserver, sends):
    """Outcomes behind against a relay 20 ms away that resets the connection
    after the first message's final "." (in doubt), with a non-ASCII subject
    longer than the log keeps and an IDN recipient: the message in doubt is
    recorded as such, the others as sent, each value in the log as queued
    (UTF-8 through libpq's text format, cut where the model cuts)."""
    import mailer

    subject = "Zoë’s Übersicht ✓ " * 20  # 360 characters
    recipients = ["first@example.com", "leser@bücher.example", "ann@example.com"]
    for address in recipients:
        mailer.send_mail(subject, "Grüße", "news@example.com", [address])
    mailserver.delay_replies(0.02)
    mailserver.reset_after_data(times=1)

    result = send_queued()

    assert (result.sent, result.in_doubt, result.error) == (2, 1, None)
    assert len(sends) == 3  # all three behind, the in-doubt one too
    assert Counter(deliveries(mailserver)) == Counter(
        ["first@example.com", "leser@xn--bcher-kva.example", "ann@example.com"]
    )
    doubtful = Message.all_objects.get(to_address="first@example.com")
    assert doubtful.status == MessageStatus.IN_DOUBT
    assert doubtful.in_doubt == 1
    logs = {log.recipient: log for log in MessageLog.objects.all()}
    # Queuing stored the IDN domain in its ASCII form; the log says the same.
    queued = set(Message.all_objects.values_list("to_address", flat=True))
    assert set(logs) == queued
    assert "leser@xn--bcher-kva.example" in queued
    assert logs["first@example.com"].result == LogResult.IN_DOUBT
    assert logs["leser@xn--bcher-kva.example"].result == LogResult.SENT
    assert {log.subject for log in logs.values()} == {subject[:255]}
