"""Parallel connections: one ``send_mail`` run driving N SMTP connections to
the real test server on 127.0.0.1, each connection in its own thread with its
own database connection. Every message goes out exactly once, priority still
overtakes, the run's limits hold for the whole run, and a stop, an error or a
``kill -9`` keeps the one-connection guarantees per connection.

The server answers each DATA after a small delay, so that the connections
really overlap. What the server received is read from its list of messages
(not a per-address dict), so a duplicate shows as a second entry.
"""

from __future__ import annotations

import threading
import time
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

import mailer
from mailer.checks import check_connections
from mailer.models import LogResult, Message, MessageLog, MessageStatus
from mailer.sending.engine import SendResult, send_queued
from mailer.sending.pool import MAX_CONNECTIONS, PoolResult
from tests.faultlib import (
    addresses,
    deliveries,
    fill_job,
    fill_single,
    nothing_claimed,
    one_sent_log_per_message,
    summary,
    wait_until,
)

# Every connection thread has its own database connection, which sees only
# committed rows: no test transaction around these tests.
pytestmark = pytest.mark.django_db(transaction=True)


def overlapping_sessions(server) -> int:
    """How many SMTP sessions were all busy at one moment: sessions whose
    first and last accepted message bracket a common instant."""
    spans: dict[int, list[float]] = {}
    for m in server.messages:
        span = spans.setdefault(m.session_id, [m.received_at, m.received_at])
        span[1] = m.received_at
    if not spans:
        return 0
    latest_start = max(first for first, _last in spans.values())
    return sum(1 for first, last in spans.values() if first <= latest_start <= last)


# -- delivery ------------------------------------------------------------------------


def test_four_connections_deliver_500_messages_exactly_once(mailserver):
    recipients = addresses(250, "single") + addresses(250, "job")
    fill_single(recipients[:250])
    fill_job(recipients[250:])
    mailserver.delay(0.005)

    result = send_queued(connections=4)

    assert isinstance(result, PoolResult)
    assert (result.sent, result.deferred, result.failed) == (500, 0, 0)
    assert (result.parallel, result.connections) == (4, 4)
    assert result.stop_reason == "queue empty"
    delivered = deliveries(mailserver)
    assert sorted(delivered) == sorted(recipients)  # none lost, none twice
    assert mailserver.connections == 4
    assert overlapping_sessions(mailserver) == 4
    assert not Message.all_objects.exclude(status=MessageStatus.SENT).exists()
    assert one_sent_log_per_message()
    assert nothing_claimed()
    assert result.summary().endswith("; stopped: queue empty; 4 connections")


def test_sixteen_connections_on_one_database_never_find_it_locked(mailserver):
    """16 threads record outcomes as fast as the server answers: on SQLite
    every write waits for the database-wide write lock (BEGIN IMMEDIATE and
    the busy timeout) instead of failing with "database is locked"."""
    recipients = addresses(400, "many")
    fill_single(recipients)

    result = send_queued(connections=16, batch_size=32)

    assert result.error is None, result.error
    assert result.sent == 400
    delivered = deliveries(mailserver)
    assert sorted(delivered) == sorted(recipients)
    assert one_sent_log_per_message()


def test_on_sqlite_the_connections_of_a_run_take_turns_to_write(
    mailserver, monkeypatch
):
    """With no busy timeout to speak of (1 ms), eight threads writing at once
    would fail with "database is locked"; they queue in the process instead.
    (A new project's SQLite, without WAL, fsyncs every commit and made 16
    connections exceed even the default 5 s timeout.)"""
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's database-wide write lock")
    # The threads' connections are made from this dict when they open.
    monkeypatch.setitem(connection.settings_dict["OPTIONS"], "timeout", 0.001)
    recipients = addresses(400, "turns")
    fill_single(recipients)

    result = send_queued(connections=8, batch_size=16)

    assert result.error is None, result.error
    assert sorted(deliveries(mailserver)) == sorted(recipients)
    assert one_sent_log_per_message()


def test_one_connection_is_the_single_connection_run(mailserver):
    queue = addresses(5, "one")
    fill_single(queue)

    result = send_queued(connections=1)

    assert type(result) is SendResult
    assert result.summary().endswith("; stopped: queue empty")
    assert (result.sent, mailserver.connections) == (5, 1)


def test_an_empty_queue_starts_no_connection(mailserver):
    result = send_queued(connections=8)

    assert (result.attempted, result.stop_reason) == (0, "queue empty")
    assert mailserver.connections == 0
    assert result.summary().endswith(" (0.0/s); stopped: queue empty")


def test_a_short_queue_opens_only_the_connections_it_needs(mailserver):
    fill_single(addresses(3, "few"))

    result = send_queued(connections=4)

    # One connection claims all three (its share of the batch is 25).
    assert (result.sent, result.connections, mailserver.connections) == (3, 1, 1)


# -- what the server answers, per recipient ------------------------------------------


def test_550_and_451_are_judged_per_message_under_four_connections(
    mailserver, settings
):
    settings.MAILER_RETRY_BACKOFF_SECONDS = 600
    recipients = addresses(60, "mix")
    fill_single(recipients)
    rejected = [recipients[3], recipients[31]]
    deferred = [recipients[7], recipients[44]]
    mailserver.reject(rejected, code=550, reply="5.1.1 No such user")
    mailserver.defer(deferred, code=451, reply="4.7.1 Greylisted")
    mailer.send_mail(
        "Minutes", "b", "a@example.com", ["ann@example.com", "gone@example.com"]
    )
    mailserver.reject(["gone@example.com"], reply="5.1.1 No such user")
    mailserver.delay(0.005)

    result = send_queued(connections=4, batch_size=8)

    assert (result.sent, result.failed, result.deferred) == (57, 2, 2)
    for address in rejected:
        message = Message.all_objects.get(to_address=address)
        assert (message.status, message.attempts) == (MessageStatus.FAILED, 1)
        assert list(
            MessageLog.objects.filter(recipient=address).values_list(
                "result", "smtp_code", "reply"
            )
        ) == [(LogResult.FAILED, 550, "5.1.1 No such user")]
    for address in deferred:
        message = Message.all_objects.get(to_address=address)
        assert (message.status, message.attempts) == (MessageStatus.DEFERRED, 1)
        assert MessageLog.objects.get(recipient=address).smtp_code == 451
    minutes = MessageLog.objects.get(subject="Minutes", result=LogResult.SENT)
    assert minutes.reply == "gone@example.com refused: 550 5.1.1 No such user"
    # The refused recipient gets its own failed row (mailer.sending.partial).
    gone = MessageLog.objects.get(subject="Minutes", result=LogResult.FAILED)
    assert (gone.recipient, gone.smtp_code) == ("gone@example.com", 550)
    delivered = deliveries(mailserver)
    assert sorted(delivered) == sorted(
        [a for a in recipients if a not in rejected + deferred] + ["ann@example.com"]
    )


# -- priority ------------------------------------------------------------------------


def test_high_priority_mail_overtakes_a_newsletter_drained_by_four_connections(
    mailserver, settings
):
    settings.MAILER_BATCH_SIZE = 100
    recipients = addresses(2000, "news")
    fill_single(recipients, subject="Newsletter")
    # The connections keep step (each DATA takes as long), so the reset is
    # queued while all four are in the middle of their batches.
    mailserver.delay(0.002)
    queued_when = {}

    def password_reset_midway(result) -> None:
        if "received" not in queued_when and result.attempted >= 250:
            mailer.send_mail(
                "Reset", "link", "site@example.com", ["reset@example.com"], "high"
            )
            queued_when["received"] = mailserver.count  # read after the commit

    result = send_queued(connections=4, on_progress=password_reset_midway)

    assert result.sent == 2001
    delivered = deliveries(mailserver)
    assert sorted(delivered) == sorted([*recipients, "reset@example.com"])
    position = delivered.index("reset@example.com")
    # Behind it at most what the four connections had claimed when it was
    # queued: 4 x 25 messages, the same bound as one connection's batch of 100.
    assert queued_when["received"] <= position <= queued_when["received"] + 100
    assert position < 2000 - 500  # far ahead of the newsletter's end


# -- limits of the whole run ---------------------------------------------------------


def test_max_messages_is_exact_across_connections(mailserver):
    fill_single(addresses(500, "limit"))
    mailserver.delay(0.002)

    result = send_queued(connections=4, max_messages=137, batch_size=20)

    assert (result.sent, result.stop_reason) == (137, "message limit")
    assert len(deliveries(mailserver)) == 137
    assert Message.all_objects.filter(status=MessageStatus.SENT).count() == 137
    assert nothing_claimed()
    assert Message.all_objects.due().count() == 500 - 137


def test_max_seconds_is_one_deadline_for_all_connections(mailserver):
    fill_single(addresses(80, "late"))
    mailserver.delay(0.2)

    result = send_queued(connections=4, max_seconds=1.0, batch_size=40)

    assert result.stop_reason == "time limit"
    # Four connections, five 0.2 s messages each in the second, plus the one
    # each has in flight at the deadline.
    assert 4 <= result.sent <= 4 * 6
    assert nothing_claimed()
    assert Message.all_objects.due().count() == 80 - result.sent
    assert set(Message.all_objects.due().values_list("attempts", flat=True)) == {0}


def test_the_throttle_is_for_the_whole_run(mailserver):
    fill_single(addresses(10, "slow"))

    started = time.monotonic()
    result = send_queued(connections=4, throttle=20)

    assert result.sent == 10
    # Message k of the run, whichever connection sends it, may not leave
    # before k twentieths of a second into the run.
    offsets = sorted(m.received_at - started for m in mailserver.messages)
    assert all(offset >= k / 20 for k, offset in enumerate(offsets)), offsets


def test_a_stop_request_lets_each_connection_finish_its_message(mailserver):
    recipients = addresses(400, "stop")
    fill_single(recipients)
    mailserver.delay(0.005)

    result = send_queued(
        connections=4, should_stop=lambda: mailserver.count >= 60, batch_size=200
    )

    assert result.stop_reason == "stop requested"
    assert nothing_claimed()  # every unstarted claim given back
    assert result.sent == mailserver.count == len(deliveries(mailserver))
    assert Message.all_objects.due().count() == 400 - result.sent
    assert set(Message.all_objects.due().values_list("attempts", flat=True)) == {0}
    rest = send_queued(connections=4)
    assert rest.sent + result.sent == 400
    assert sorted(deliveries(mailserver)) == sorted(recipients)


def test_an_unreachable_server_stops_every_connection_with_one_error(mailserver):
    recipients = addresses(50, "down")
    fill_single(recipients)
    mailserver.stop()

    result = send_queued(connections=4)

    assert (result.sent, result.stop_reason) == (0, "mail server unreachable")
    assert result.error.startswith("cannot connect to ")
    # Each connection gave its claims back (a claim released by one and
    # taken by another before it saw the stop is released twice).
    assert result.released >= 50
    assert result.summary().count("error") == 1
    assert nothing_claimed()
    assert set(Message.all_objects.values_list("attempts", flat=True)) == {0}
    assert not MessageLog.objects.exists()

    mailserver.start()
    assert send_queued(connections=4).sent == 50
    assert sorted(deliveries(mailserver)) == sorted(recipients)


def test_each_connection_closes_its_database_connection(mailserver):
    if connection.vendor != "postgresql":
        pytest.skip("counted in pg_stat_activity")
    fill_single(addresses(100, "db"))

    assert send_queued(connections=4).sent == 100

    def backends() -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database()"
            )
            return cursor.fetchone()[0]

    # The threads closed theirs; a server backend leaves pg_stat_activity a
    # moment after its client hung up (seen once in CI: 2 right after the
    # run), so it gets 5 s. A connection left open would stay for good.
    wait_until(lambda: backends() == 1, timeout=5)
    assert backends() == 1  # this test's own


# -- the command and the setting -----------------------------------------------------


def test_send_mail_connections_prints_the_pool_summary(mailserver):
    fill_single(addresses(20, "cmd"))
    out = StringIO()

    call_command("send_mail", "--connections", "4", stdout=out)

    assert summary(out.getvalue())["sent"] == 20
    assert out.getvalue().endswith("; stopped: queue empty; 4 connections\n")


@pytest.mark.parametrize("value", ["0", "-1", str(MAX_CONNECTIONS + 1)])
def test_send_mail_refuses_a_number_of_connections_out_of_range(value):
    with pytest.raises(CommandError) as error:
        call_command("send_mail", "--connections", value)
    assert str(error.value) == (
        f"--connections: the number of connections must be from 1 to "
        f"{MAX_CONNECTIONS}, not {value}"
    )


@pytest.mark.parametrize("value", [0, MAX_CONNECTIONS + 1, "4", 2.5, True])
def test_the_check_refuses_a_bad_mailer_connections(settings, value):
    settings.MAILER_CONNECTIONS = value

    [error] = check_connections()

    assert error.id == "mailer.E006"
    assert error.msg.startswith("MAILER_CONNECTIONS: the number of connections ")


def test_the_setting_chooses_the_number_of_connections(mailserver, settings):
    settings.MAILER_CONNECTIONS = 3
    assert check_connections() == []
    fill_single(addresses(300, "setting"))
    mailserver.delay(0.002)

    result = send_queued()

    assert (result.parallel, result.sent, mailserver.connections) == (3, 300, 3)


def test_progress_is_reported_from_the_callers_thread(mailserver):
    """django-chroniker keeps the running job in a thread-local, so progress
    must be reported by the command's thread, not by the connections'; the
    last report is the run's total."""
    fill_single(addresses(40, "progress"))
    mailserver.delay(0.01)
    reports = []

    def on_progress(result) -> None:
        reports.append((threading.current_thread(), result.attempted))

    result = send_queued(connections=4, on_progress=on_progress)

    assert result.sent == 40
    assert {thread for thread, _done in reports} == {threading.current_thread()}
    done = [done for _thread, done in reports]
    assert done == sorted(done)
    assert done[-1] == 40
