"""Sending against a real SMTP server on 127.0.0.1: one reused connection,
every reply judged and recorded the moment it arrives, limits honoured, and
high-priority mail overtaking a newsletter that is draining (in another
process: tests/system/test_priority_across_processes.py)."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest
from django.core.mail import EmailMessage
from django.db import IntegrityError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import mailer
from mailer.jobs.expand import expand_pending_jobs
from mailer.jobs.services import RenderedEmail, create_job
from mailer.models import (
    DontSendEntry,
    LogResult,
    Message,
    MessageJob,
    MessageLog,
    MessageStatus,
    Priority,
    SuppressionReason,
)
from mailer.queue import enqueue
from mailer.sending import outcomes
from mailer.sending.claim import claim_batch
from mailer.sending.engine import retry_deferred, send_queued
from mailer.sending.smtp import SendingConnection
from tests.conftest import by_recipient

pytestmark = pytest.mark.django_db


def queue(n: int, *, prefix: str = "r", priority: str = "medium") -> list[str]:
    addresses = [f"{prefix}{i}@example.com" for i in range(n)]
    mailer.send_mass_mail(
        [(f"Hello {a}", f"Body for {a}", "news@example.com", [a]) for a in addresses],
        priority=priority,
    )
    return addresses


def received_order(server) -> list[str]:
    return [m.rcpt_tos[0] for m in server.messages]


def logs(address: str) -> list[tuple]:
    return list(
        MessageLog.objects.filter(recipient=address)
        .order_by("id")
        .values_list("result", "smtp_code", "attempt", "reply")
    )


def text(part) -> str:
    return part.get_content().replace("\r\n", "\n").rstrip("\n") + "\n"


# -- the connection --------------------------------------------------------------


def test_a_run_sends_every_batch_over_one_reused_connection(mailserver):
    addresses = queue(30)

    result = send_queued(batch_size=10)

    assert (result.sent, result.batches, result.connections) == (30, 3, 1)
    assert mailserver.connections == 1
    assert {m.session_id for m in mailserver.messages} == {1}
    assert sorted(received_order(mailserver)) == sorted(addresses)
    assert Message.all_objects.filter(status=MessageStatus.SENT).count() == 30
    assert not Message.all_objects.filter(due_at__isnull=False).exists()
    assert MessageLog.objects.filter(result=LogResult.SENT, smtp_code=250).count() == 30


def test_each_outcome_is_written_the_moment_the_server_answers(mailserver, monkeypatch):
    queue(5)
    sent_before_each_send = []
    original = SendingConnection.send

    def spy(self, envelope_from, recipients, data, **kwargs):
        sent_before_each_send.append(
            Message.all_objects.filter(status=MessageStatus.SENT).count()
        )
        return original(self, envelope_from, recipients, data, **kwargs)

    monkeypatch.setattr(SendingConnection, "send", spy)

    send_queued(batch_size=5)

    assert sent_before_each_send == [0, 1, 2, 3, 4]


@pytest.mark.django_db(transaction=True)
def test_an_outcome_is_written_whole_or_not_at_all(mailserver):
    """Outside any transaction, as cron runs it: when the log row cannot be
    written, the message's new status is rolled back with it. The message
    keeps its claim and goes out again once the lease ends; it is never
    marked sent without its log row."""
    queue(1)

    def refuse_log_rows(execute, sql, params, many, context):
        if "INSERT INTO" in sql and "mailer_messagelog" in sql:
            if connection.vendor == "sqlite":
                # The UPDATE of the pair has run; the INSERT fails.
                assert "BEGIN" in context["connection"].queries_log[-2]["sql"]
            raise IntegrityError("log row refused")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(refuse_log_rows), CaptureQueriesContext(connection):
        result = send_queued()

    assert result.stop_reason == "database error"
    assert "log row refused" in result.error
    assert mailserver.count == 1
    message = Message.all_objects.get()
    assert (message.status, message.attempts) == (MessageStatus.QUEUED, 0)
    assert message.claim_token is not None  # held until its lease ends
    assert not MessageLog.objects.exists()


@pytest.mark.parametrize("fault", ["disconnect", "421"])
def test_a_dropped_connection_is_reopened_and_each_message_delivered_once(
    mailserver, fault
):
    addresses = queue(60)
    if fault == "disconnect":
        mailserver.disconnect_after(25)
    else:
        mailserver.reply_421_after(25)

    result = send_queued(batch_size=20)

    assert (result.sent, result.deferred, result.failed) == (60, 0, 0)
    assert mailserver.connections == 3  # 25 + 25 + 10
    assert sorted(mailserver.counts) == sorted(addresses)
    assert set(mailserver.counts.values()) == {1}
    # Reconnecting is the connection's problem, not the message's.
    assert set(Message.all_objects.values_list("attempts", flat=True)) == {1}
    assert not MessageLog.objects.exclude(result=LogResult.SENT).exists()


def test_when_the_server_is_down_the_run_stops_and_nothing_is_lost(mailserver):
    addresses = queue(5)
    mailserver.stop()

    result = send_queued()

    assert (result.sent, result.deferred, result.failed) == (0, 0, 0)
    assert result.stop_reason == "mail server unreachable"
    assert result.error.startswith(f"cannot connect to 127.0.0.1:{mailserver.port}: ")
    assert result.released == 5
    assert set(Message.all_objects.values_list("attempts", flat=True)) == {0}
    assert not Message.all_objects.filter(claim_token__isnull=False).exists()
    assert Message.all_objects.due().count() == 5
    assert not MessageLog.objects.exists()

    mailserver.start()
    assert send_queued().sent == 5
    assert sorted(mailserver.counts) == sorted(addresses)


def test_when_the_server_goes_away_mid_run_the_rest_waits_unburned(mailserver):
    addresses = queue(25)

    def down_after_the_first_batch(result) -> None:
        if result.batches == 1:
            mailserver.stop()

    first = send_queued(batch_size=10, on_progress=down_after_the_first_batch)

    assert first.sent == 10
    assert first.error.startswith(f"cannot connect to 127.0.0.1:{mailserver.port}: ")
    waiting = Message.all_objects.exclude(status=MessageStatus.SENT)
    assert waiting.count() == 15
    assert set(waiting.values_list("attempts", flat=True)) == {0}
    assert not Message.all_objects.filter(claim_token__isnull=False).exists()
    assert MessageLog.objects.count() == 10

    mailserver.start()
    assert send_queued().sent == 15
    assert sorted(mailserver.counts) == sorted(addresses)
    assert set(mailserver.counts.values()) == {1}


# -- what the server answers ---------------------------------------------------


def test_a_550_fails_the_message_for_good_after_one_attempt(mailserver):
    queue(3)
    mailserver.reject(["r1@example.com"], code=550, reply="5.7.1 Relaying denied")

    first = send_queued()

    assert (first.sent, first.failed) == (2, 1)
    failed = Message.all_objects.get(to_address="r1@example.com")
    assert (failed.status, failed.attempts, failed.due_at) == (
        MessageStatus.FAILED,
        1,
        None,
    )
    assert logs("r1@example.com") == [
        (LogResult.FAILED, 550, 1, "5.7.1 Relaying denied")
    ]

    mailserver.accept_all()
    assert retry_deferred() == 0
    second = send_queued()
    assert second.attempted == 0
    assert "r1@example.com" not in mailserver.counts
    assert len(logs("r1@example.com")) == 1


def test_a_451_is_deferred_with_backoff_then_delivered_after_retry_deferred(
    mailserver, settings
):
    settings.MAILER_RETRY_BACKOFF_SECONDS = 120
    queue(2)
    mailserver.defer(["r0@example.com"], code=451, reply="4.7.1 Greylisted", times=1)

    before = timezone.now()
    first = send_queued()

    assert (first.sent, first.deferred) == (1, 1)
    deferred = Message.all_objects.get(to_address="r0@example.com")
    assert (deferred.status, deferred.attempts) == (MessageStatus.DEFERRED, 1)
    assert before + timedelta(seconds=120) <= deferred.due_at
    assert deferred.due_at <= timezone.now() + timedelta(seconds=120)
    assert send_queued().attempted == 0  # backing off

    assert retry_deferred() == 1
    assert send_queued().sent == 1
    assert mailserver.counts["r0@example.com"] == 1
    assert logs("r0@example.com") == [
        (LogResult.DEFERRED, 451, 1, "4.7.1 Greylisted"),
        (LogResult.SENT, 250, 2, ""),
    ]


def test_the_backoff_doubles_and_is_capped(settings):
    settings.MAILER_RETRY_BACKOFF_SECONDS = 60
    settings.MAILER_RETRY_BACKOFF_MAX_SECONDS = 300
    assert [outcomes.backoff(n).total_seconds() for n in range(1, 6)] == [
        60,
        120,
        240,
        300,
        300,
    ]


def test_a_message_deferred_max_attempts_times_fails_for_good(mailserver, settings):
    settings.MAILER_MAX_ATTEMPTS = 3
    queue(1)
    mailserver.defer(["r0@example.com"], code=452, reply="4.2.2 Mailbox full")

    for _ in range(4):
        send_queued()
        retry_deferred()

    message = Message.all_objects.get()
    assert (message.status, message.attempts, message.due_at) == (
        MessageStatus.FAILED,
        3,
        None,
    )
    assert [row[:3] for row in logs("r0@example.com")] == [
        (LogResult.DEFERRED, 452, 1),
        (LogResult.DEFERRED, 452, 2),
        (LogResult.FAILED, 452, 3),
    ]
    assert (
        logs("r0@example.com")[-1][3] == "gave up after 3 attempts: 4.2.2 Mailbox full"
    )


def test_a_refused_cc_does_not_stop_the_message_to_the_others(mailserver):
    mailer.send_mail(
        "Minutes", "b", "a@example.com", ["ann@example.com", "gone@example.com"]
    )
    mailserver.reject(["gone@example.com"], reply="5.1.1 No such user")

    assert send_queued().sent == 1

    (received,) = mailserver.messages
    assert received.rcpt_tos == ["ann@example.com"]
    log = MessageLog.objects.get(result=LogResult.SENT)
    assert log.smtp_code == 250
    assert log.reply == "gone@example.com refused: 550 5.1.1 No such user"
    # The refused recipient has its own FAILED row (mailer.sending.partial).
    failed = MessageLog.objects.get(result=LogResult.FAILED)
    assert (failed.recipient, failed.smtp_code) == ("gone@example.com", 550)


def test_when_every_recipient_is_refused_the_mildest_reply_decides(mailserver):
    mailer.send_mail("Hi", "b", "a@example.com", ["x@example.com", "y@example.com"])
    mailserver.reject(["x@example.com"])
    mailserver.defer(["y@example.com"], code=450, reply="4.2.0 Busy")

    assert send_queued().deferred == 1
    assert MessageLog.objects.get().smtp_code == 450


def test_a_message_that_cannot_be_built_fails_and_the_batch_goes_on(mailserver):
    queue(3)
    Message.all_objects.filter(to_address="r1@example.com").update(mime=None)

    result = send_queued()

    assert (result.sent, result.failed) == (2, 1)
    assert sorted(mailserver.counts) == ["r0@example.com", "r2@example.com"]
    (log,) = MessageLog.objects.filter(recipient="r1@example.com")
    assert log.result == LogResult.FAILED
    assert log.reply.startswith("cannot build message: ")
    assert Message.all_objects.get(to_address="r1@example.com").status == (
        MessageStatus.FAILED
    )


def test_job_mail_whose_job_cannot_be_built_fails_with_the_reason(mailserver):
    job = create_job(
        content=RenderedEmail(subject="Issue 7", body_text="News"),
        recipients=["ann@example.com", "bob@example.com"],
        from_email="news@example.com",
    )
    expand_pending_jobs()
    MessageJob.objects.filter(pk=job.pk).update(from_email="news at example.com")
    queue(1, prefix="single")

    result = send_queued()

    assert (result.sent, result.failed) == (1, 2)
    assert received_order(mailserver) == ["single0@example.com"]
    assert set(MessageLog.objects.filter(job=job).values_list("result", "reply")) == {
        (
            LogResult.FAILED,
            "cannot build message: Invalid address 'news at example.com'",
        )
    }


def test_the_dont_send_list_is_checked_right_before_sending(mailserver):
    queue(6)
    DontSendEntry.objects.create(address="R1@Example.COM", reason="bounced")

    def add_an_entry_during_the_run(result) -> None:
        # r4 is put on the list while the run is busy with the first batch.
        if result.batches == 1:
            DontSendEntry.objects.create(address="r4@example.com")

    result = send_queued(batch_size=3, on_progress=add_an_entry_during_the_run)

    assert (result.sent, result.suppressed) == (4, 2)
    assert sorted(mailserver.counts) == [
        "r0@example.com",
        "r2@example.com",
        "r3@example.com",
        "r5@example.com",
    ]
    for address in ("r1@example.com", "r4@example.com"):
        suppressed = Message.all_objects.get(to_address=address)
        assert (suppressed.status, suppressed.attempts) == (
            MessageStatus.SUPPRESSED,
            0,
        )
        assert [row[0] for row in logs(address)] == [LogResult.SUPPRESSED]


def test_an_unsubscribe_stops_newsletters_but_not_a_password_reset(mailserver):
    create_job(
        content=RenderedEmail(subject="Issue 8", body_text="News"),
        recipients=["ann@example.com", "bob@example.com"],
    )
    expand_pending_jobs()
    # Ann unsubscribes after her newsletter email was queued, then forgets
    # her password.
    DontSendEntry.objects.create(address="ann@example.com", reason="unsubscribed")
    mailer.send_mail(
        "Reset your password", "Click", "news@example.com", ["Ann@Example.com"]
    )

    result = send_queued()

    assert (result.sent, result.suppressed) == (2, 1)
    received = sorted(
        (m.rcpt_tos[0], m.message["Subject"]) for m in mailserver.messages
    )
    assert received == [
        ("Ann@Example.com", "Reset your password"),
        ("bob@example.com", "Issue 8"),
    ]


def test_a_dont_send_entry_matches_an_idn_domain_in_either_spelling(mailserver):
    DontSendEntry.objects.create(address="Ann@Bücher.example", reason="bounced")
    DontSendEntry.objects.create(address="bob@xn--mller-kva.example", reason="manual")
    mailer.send_mail("A", "x", "news@example.com", ["ann@xn--bcher-kva.example"])
    mailer.send_mail("B", "x", "news@example.com", ["Bob@Müller.example"])
    mailer.send_mail("C", "x", "news@example.com", ["cy@bücher.example"])

    result = send_queued()

    assert (result.sent, result.suppressed) == (1, 2)
    assert list(mailserver.counts) == ["cy@xn--bcher-kva.example"]
    assert DontSendEntry.objects.filter(address="ann@xn--bcher-kva.example").exists()


def test_a_bounced_copy_address_is_left_out_and_the_others_get_the_email(mailserver):
    DontSendEntry.objects.create(address="gone@example.com", reason="bounced")
    DontSendEntry.objects.create(address="ann@example.com", reason="unsubscribed")
    enqueue(
        EmailMessage(
            "Minutes",
            "Attached",
            "news@example.com",
            ["ann@example.com"],
            cc=["GONE@example.com"],
            bcc=["bob@example.com"],
        )
    )
    mailer.send_mail("Alone", "x", "news@example.com", ["gone@example.com"])

    result = send_queued()

    assert (result.sent, result.suppressed) == (1, 1)
    [received] = mailserver.messages
    assert sorted(received.rcpt_tos) == ["ann@example.com", "bob@example.com"]
    sent = Message.all_objects.get(subject="Minutes")
    assert sent.status == MessageStatus.SENT
    [log] = MessageLog.objects.filter(message_pk=sent.pk)
    assert "not sent to GONE@example.com (don't-send list)" in log.reply
    alone = Message.all_objects.get(subject="Alone")
    assert (alone.status, alone.attempts) == (MessageStatus.SUPPRESSED, 0)


def test_no_such_user_puts_a_newsletter_reader_on_the_dont_send_list(mailserver):
    create_job(
        content=RenderedEmail(subject="Issue 7", body_text="News"),
        recipients=["gone@example.com", "ann@example.com"],
        from_email="news@example.com",
    )
    expand_pending_jobs()
    mailer.send_mail("Reset", "b", "a@example.com", ["gone-too@example.com"])
    mailserver.reject(["gone@example.com", "gone-too@example.com"])

    send_queued()

    entry = DontSendEntry.objects.get()
    assert (entry.address, entry.reason) == (
        "gone@example.com",
        SuppressionReason.BOUNCED,
    )
    assert entry.note == "550 5.1.1 No such user"


def test_the_log_keeps_no_body(mailserver):
    mailer.send_mail(
        "Reset",
        "Your link: https://example.com/reset/SECRET-TOKEN/",
        "a@x.com",
        ["b@x.com"],
    )
    mailserver.defer(["b@x.com"], times=1)
    send_queued()
    retry_deferred()
    send_queued()

    rows = list(MessageLog.objects.values())
    assert len(rows) == 2
    assert not any(
        "SECRET-TOKEN" in str(value) for row in rows for value in row.values()
    )


# -- job mail on the wire ----------------------------------------------------------


def test_newsletter_readers_each_get_their_own_message(mailserver):
    create_job(
        content=RenderedEmail(
            subject="Issue 7 for [[mj:name]]",
            body_text="Dear [[mj:name]],\n.\n..leading dots stay\n",
            body_html="<p>Dear [[mj:name]]</p>",
        ),
        recipients=[
            {"email": "tom@example.com", "name": 'Tom & "Jerry" <x>'},
            {"email": "ann@example.com", "name": "Ann"},
        ],
        from_email="The Daily <news@example.com>",
    )
    expand_pending_jobs()

    assert send_queued().sent == 2

    by_rcpt = by_recipient(mailserver.messages)
    assert sorted(by_rcpt) == ["ann@example.com", "tom@example.com"]
    assert {m.mail_from for m in by_rcpt.values()} == {"news@example.com"}
    tom = by_rcpt["tom@example.com"].message
    assert tom["Subject"] == 'Issue 7 for Tom & "Jerry" <x>'
    assert text(tom.get_body(("plain",))) == (
        'Dear Tom & "Jerry" <x>,\n.\n..leading dots stay\n'
    )
    assert text(tom.get_body(("html",))) == (
        "<p>Dear Tom &amp; &quot;Jerry&quot; &lt;x&gt;</p>\n"
    )
    ann = by_rcpt["ann@example.com"].message
    assert ann["Subject"] == "Issue 7 for Ann"
    assert tom["List-Unsubscribe"].startswith("<https://news.example.com/mail/")
    assert tom["List-Unsubscribe"] != ann["List-Unsubscribe"]
    assert tom["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


# -- order, claims and limits ------------------------------------------------------


def test_high_goes_before_medium_before_low_and_oldest_first(mailserver):
    queue(2, prefix="low", priority="low")
    queue(2, prefix="medium", priority="medium")
    queue(2, prefix="high", priority="high")

    send_queued()

    assert received_order(mailserver) == [
        "high0@example.com",
        "high1@example.com",
        "medium0@example.com",
        "medium1@example.com",
        "low0@example.com",
        "low1@example.com",
    ]


def test_a_message_claimed_by_another_worker_waits_for_its_lease(mailserver):
    queue(3)
    _token, ids = claim_batch(1)  # another worker holds the first message

    assert send_queued().sent == 2
    assert Message.all_objects.get(pk=ids[0]).status == MessageStatus.QUEUED

    # That worker died: once its lease runs out the message is due again.
    Message.all_objects.filter(pk=ids[0]).update(due_at=timezone.now())
    assert send_queued().sent == 1
    assert set(mailserver.counts.values()) == {1}


def test_max_messages_and_batch_size_limit_a_run(mailserver, settings):
    queue(25)

    result = send_queued(max_messages=7, batch_size=3)

    assert (result.sent, result.batches, result.stop_reason) == (7, 3, "message limit")
    assert not Message.all_objects.filter(claim_token__isnull=False).exists()
    settings.MAILER_EMAIL_MAX_BATCH = 5
    assert send_queued().sent == 5
    settings.MAILER_BATCH_SIZE = 4
    settings.MAILER_EMAIL_MAX_BATCH = None
    assert send_queued().batches == 4  # 13 left: 4 + 4 + 4 + 1
    assert mailserver.count == 25


def test_max_seconds_stops_a_slow_run_and_gives_its_claims_back(mailserver):
    queue(40)
    mailserver.delay(0.2)

    started = time.monotonic()
    result = send_queued(max_seconds=1.0, batch_size=40)
    elapsed = time.monotonic() - started

    assert result.stop_reason == "time limit"
    assert 1 <= result.sent <= 6
    assert elapsed < 1.0 + 1.0  # one message in flight may finish after it
    assert result.released == 40 - result.sent
    assert not Message.all_objects.filter(claim_token__isnull=False).exists()
    assert Message.all_objects.due().count() == 40 - result.sent
    assert set(Message.all_objects.due().values_list("attempts", flat=True)) == {0}


def test_throttle_spaces_messages_out(mailserver):
    queue(6)

    started = time.monotonic()
    result = send_queued(throttle=10)

    assert result.sent == 6
    assert time.monotonic() - started >= 0.5
    # Message k may not leave before k tenths of a second into the run.
    offsets = [m.received_at - started for m in mailserver.messages]
    assert all(offset >= k / 10 for k, offset in enumerate(offsets)), offsets


def test_an_empty_queue_costs_one_query_on_the_claim_index(
    transactional_db, mailserver
):
    # A long history of sent mail must not make the every-minute run slower:
    # the claim index holds pending rows only. (transactional_db: outside a
    # test transaction, as cron runs it.)
    Message.all_objects.bulk_create(
        Message(
            to_address=f"old{i}@example.com", status=MessageStatus.SENT, due_at=None
        )
        for i in range(2000)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")

    with CaptureQueriesContext(connection) as queries:
        result = send_queued()

    assert (result.attempted, result.stop_reason) == (0, "queue empty")
    assert len(queries) == 1, [q["sql"] for q in queries]
    assert mailserver.connections == 0
    explain = "EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN "
    with connection.cursor() as cursor:
        cursor.execute(explain + queries[0]["sql"])
        plan = " ".join(str(row) for row in cursor.fetchall())
    assert "mailer_message_claim" in plan, plan
    # No table scan: PostgreSQL's "Seq Scan", SQLite's "SCAN t" without "USING".
    assert "Seq Scan" not in plan
    assert not re.search(r"SCAN (U0|mailer_message)(?! USING)", plan), plan


# -- priority that overtakes ----------------------------------------------------------


def bulk_newsletter(n: int) -> None:
    """``n`` medium-priority messages, written directly for speed."""
    now = timezone.now()
    Message.all_objects.bulk_create(
        (
            Message(
                to_address=f"n{i}@example.com",
                envelope_from="news@example.com",
                envelope_to=[f"n{i}@example.com"],
                subject="Newsletter",
                mime=(
                    f"From: news@example.com\r\nTo: n{i}@example.com\r\n"
                    "Subject: Newsletter\r\n\r\nNews.\r\n"
                ).encode(),
                priority=Priority.MEDIUM,
                due_at=now,
            )
            for i in range(n)
        ),
        batch_size=2000,
    )


def test_high_priority_mail_overtakes_a_draining_newsletter(mailserver, settings):
    settings.MAILER_BATCH_SIZE = 100
    # More newsletter than the run may send (1,000): a claim blind to
    # priority would leave the reset queued behind the rest.
    bulk_newsletter(2_000)
    queued_at = {}

    def password_reset_midway(result) -> None:
        if result.batches == 3:
            queued_at["received"] = mailserver.count
            mailer.send_mail(
                "Reset", "link", "site@example.com", ["reset@example.com"], "high"
            )

    send_queued(max_messages=1000, on_progress=password_reset_midway)

    position = received_order(mailserver).index("reset@example.com")
    assert queued_at["received"] == 300
    assert queued_at["received"] <= position <= queued_at["received"] + 100
    assert Message.all_objects.get(to_address="reset@example.com").status == (
        MessageStatus.SENT
    )
