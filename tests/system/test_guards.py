"""Tests that guard what the other tests claim (issue 16, item 8).

Each test here was written against a bug planted by hand in the product, one
at a time, that the rest of the suite did not notice; each fails on its bug
and passes on the real code. The bug each one guards against is named in its
docstring. Every run is bounded (``max_messages``, ``max_seconds``) and the
module has a per-test timeout, so a bug that makes the engine loop fails a
test instead of hanging the suite.
"""

from __future__ import annotations

from collections import Counter

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

import mailer
from mailer.dbclock import DbNow
from mailer.jobs.expand import expand_job, expand_pending_jobs
from mailer.jobs.services import RenderedEmail, create_job
from mailer.models import LogResult, Message, MessageJob, MessageLog, MessageStatus
from mailer.sending.claim import claim_batch, release, renew
from mailer.sending.engine import retry_deferred, send_queued
from mailer.sending.records import OutcomeWriter

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]

#: Bounds for every run here: a run that has not emptied the queue by then
#: is a loop, and its test fails on the stop reason.
BOUNDED = {"max_messages": 50, "max_seconds": 20}

#: The same test on both outcome-write paths of ``OutcomeWriter``: inside a
#: transaction (a test, a custom runner) and in autocommit, as cron runs it.
BOTH_WRITE_PATHS = [
    pytest.param(False, id="in-a-transaction"),
    pytest.param(True, id="autocommit", marks=pytest.mark.django_db(transaction=True)),
]


def queue(*addresses: str, priority: str = "medium") -> None:
    mailer.send_mass_mail(
        [(f"Hello {a}", f"Body for {a}", "news@example.com", [a]) for a in addresses],
        priority=priority,
    )


def received(server) -> list[str]:
    """Every envelope recipient of every message, duplicates kept, in order."""
    return [rcpt for m in server.messages for rcpt in m.rcpt_tos]


def state(pk: int) -> dict:
    return Message.all_objects.values(
        "status", "attempts", "due_at", "claim_token", "in_doubt", "message_id"
    ).get(pk=pk)


# -- 1. the claim token guards the outcome write ------------------------------------


@pytest.mark.parametrize("autocommit", BOTH_WRITE_PATHS)
def test_a_worker_whose_lease_ran_out_cannot_overwrite_the_new_owners_outcome(
    mailserver, autocommit
):
    """Planted bug: the outcome UPDATE without ``AND claim_token = %s``
    (mailer/sending/records.py). Worker A claims, stalls past its lease;
    worker B claims the message again and delivers it; A's late "deferred"
    must then change nothing on the row (its log row still says what A did).
    """
    assert connection.get_autocommit() is autocommit
    queue("ann@example.com")
    token_a, [pk] = claim_batch(1)
    loaded_by_a = Message.all_objects.get(pk=pk)
    # A's lease runs out on the database's clock (mailer.dbclock): the message
    # is due again while A still holds it in memory.
    Message.all_objects.filter(pk=pk).update(due_at=DbNow(-1))

    worker_b = send_queued(**BOUNDED)

    assert (worker_b.sent, worker_b.stop_reason) == (1, "queue empty")
    assert received(mailserver) == ["ann@example.com"]
    after_b = state(pk)
    assert (after_b["status"], after_b["attempts"], after_b["due_at"]) == (
        MessageStatus.SENT,
        1,
        None,
    )

    written = OutcomeWriter().write(
        message=loaded_by_a,
        token=token_a,
        status=MessageStatus.DEFERRED,
        attempts_added=1,
        due_in=60.0,
        message_id="<late@example.com>",
        provider_id=None,
        result=LogResult.DEFERRED,
        smtp_code=451,
        reply="4.4.2 worker A's late reply",
        attempt=1,
        now=timezone.now(),
    )

    assert written is False
    assert state(pk) == after_b
    assert list(
        MessageLog.objects.filter(message_pk=pk)
        .order_by("id")
        .values_list("result", "reply")
    ) == [(LogResult.SENT, ""), (LogResult.DEFERRED, "4.4.2 worker A's late reply")]


def test_a_worker_whose_lease_ran_out_can_neither_renew_nor_release_it():
    """Planted bugs: ``claim.renew`` or ``claim.release`` without their
    ``claim_token`` filter (mailer/sending/claim.py). After the takeover,
    worker A's renewal holds nothing and its release gives nothing back:
    worker B keeps its claim and its lease."""
    queue("ann@example.com", "bob@example.com")
    token_a, ids = claim_batch(2)
    Message.all_objects.filter(pk__in=ids).update(due_at=DbNow(-1))
    token_b, taken_over = claim_batch(2)
    assert sorted(taken_over) == sorted(ids)
    held_by_b = {pk: state(pk) for pk in ids}

    assert renew(token_a, ids) == set()
    assert release(token_a) == 0
    assert release(token_a, ids) == 0

    assert {pk: state(pk) for pk in ids} == held_by_b
    assert {state(pk)["claim_token"] for pk in ids} == {token_b}
    assert renew(token_b, ids) == set(ids)


# -- 2. the backoff doubles, through the engine -------------------------------------


def test_consecutive_deferrals_back_off_60_120_240_then_the_cap(mailserver, settings):
    """Planted bug: a backoff that never doubles (``outcomes.backoff`` with
    the exponent at 0, or the engine passing attempt 1 every time). Five 4xx
    replies in a row from the real server, each through the real engine:
    each deferral is due twice as late as the one before, up to
    ``MAILER_RETRY_BACKOFF_MAX_SECONDS``."""
    settings.MAILER_RETRY_BACKOFF_SECONDS = 60
    settings.MAILER_RETRY_BACKOFF_MAX_SECONDS = 300
    queue("busy@example.com")
    mailserver.defer("busy@example.com", code=450, reply="4.2.1 Mailbox busy")
    pk = Message.all_objects.get().pk

    delays = []
    for attempt in range(1, 6):
        run = send_queued(**BOUNDED)
        assert (run.deferred, run.stop_reason) == (1, "queue empty")
        message = state(pk)
        assert (message["status"], message["attempts"]) == (
            MessageStatus.DEFERRED,
            attempt,
        )
        # The log row's time and due_at are both the database's now of the
        # same write (mailer.dbclock), so their difference is the backoff.
        logged_at = MessageLog.objects.filter(message_pk=pk, attempt=attempt).get()
        delays.append(round((message["due_at"] - logged_at.created_at).total_seconds()))
        assert send_queued(**BOUNDED).attempted == 0  # backing off, not due
        assert retry_deferred() == 1  # due now; the attempt count stays

    assert delays == [60, 120, 240, 300, 300]
    assert Counter(received(mailserver)) == Counter()  # refused at RCPT each time


# -- 3. expansion de-duplicates, also across chunks and a resume --------------------


def test_an_interrupted_expansion_resumed_queues_each_reader_once(mailserver):
    """Planted bugs: expansion without its ``key in seen`` check, or a
    resumed expansion whose ``seen`` set starts empty instead of holding the
    part already expanded (mailer/jobs/expand.py). Spellings of one mailbox
    in one chunk, across chunks, and across the interruption: each reader
    gets one email, the other spellings are skipped and logged."""
    job = create_job(
        content=RenderedEmail(subject="News", body_text="Hello\n"),
        recipients=["placeholder@example.com"],
    )
    # The click de-duplicates already; a snapshot with duplicates is what a
    # job made by an older version (or a bug there) hands to expansion.
    MessageJob.objects.filter(pk=job.pk).update(
        recipients=[
            "Anna <anna@example.com>",  # chunk 1
            "bob@example.com",
            "ANNA@example.com",  # chunk 2 (after the resume): Anna again
            "carl@example.com",
            "Carl <CARL@Example.com>",  # chunk 3: Carl of chunk 2 again
            "ann@bücher.example",
            "ann@xn--bcher-kva.example",  # chunk 4: chunk 3's IDN in punycode
            "bob@example.com",  # and Bob of chunk 1, written the same
        ],
        recipient_count=8,
    )
    stops = iter([False, True])
    assert expand_job(job.pk, chunk_size=2, should_stop=lambda: next(stops)) == (
        2,
        0,
    )
    assert Message.all_objects.count() == 2  # interrupted after chunk 1

    resumed = expand_pending_jobs(chunk_size=2)
    run = send_queued(**BOUNDED)

    assert (resumed.queued, resumed.skipped) == (2, 4)
    assert run.stop_reason == "queue empty"
    assert sorted(received(mailserver)) == [
        "ann@xn--bcher-kva.example",
        "anna@example.com",
        "bob@example.com",
        "carl@example.com",
    ]
    assert sorted(
        MessageLog.objects.filter(result=LogResult.SKIPPED).values_list(
            "recipient", "reply"
        )
    ) == [
        ("ANNA@example.com", "duplicate address"),
        ("Carl <CARL@Example.com>", "duplicate address"),
        ("ann@xn--bcher-kva.example", "duplicate address"),
        ("bob@example.com", "duplicate address"),
    ]
    assert MessageJob.objects.get(pk=job.pk).skipped_count == 4


# -- 4. an outcome is written whole or not at all -----------------------------------


def _refuse_log_rows(execute, sql, params, many, context):
    if "INSERT INTO" in sql and MessageLog._meta.db_table in sql:
        raise IntegrityError("log row refused")
    return execute(sql, params, many, context)


def test_inside_a_callers_transaction_a_failed_log_row_undoes_the_status_too():
    """Planted bug: ``transaction.atomic`` removed from the fallback path
    of ``OutcomeWriter.write`` (mailer/sending/records.py: inside a caller's
    transaction, a custom runner or a test). The savepoint is what undoes
    the UPDATE when the log INSERT fails; without it a runner that catches
    the error and commits keeps a message marked sent with no log row and
    no claim, never sent again although its delivery is unrecorded."""
    queue("ann@example.com")
    token, [pk] = claim_batch(1)
    before = state(pk)

    with transaction.atomic():  # the caller's transaction
        assert not connection.get_autocommit()
        with (
            pytest.raises(IntegrityError, match="log row refused"),
            connection.execute_wrapper(_refuse_log_rows),
        ):
            OutcomeWriter().write(
                message=Message.all_objects.get(pk=pk),
                token=token,
                status=MessageStatus.SENT,
                attempts_added=1,
                due_in=None,
                message_id="<ann@example.com>",
                provider_id=None,
                result=LogResult.SENT,
                smtp_code=250,
                reply="",
                attempt=1,
                now=timezone.now(),
            )
        # The caller goes on, and commits.

    assert state(pk) == before
    assert before["claim_token"] == token  # held until its lease ends
    assert not MessageLog.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_partly_refused_email_is_recorded_sent_only_with_its_retry(mailserver):
    """Planted bug: the ``transaction.atomic`` around recording a partly
    refused email as sent and queueing its refused recipients' retry removed
    (mailer/sending/engine.py). When the retry cannot be written, the email
    must not stay recorded as sent: the refused recipient would never get
    it. It keeps its claim and goes out again once the lease ends."""
    mailer.send_mail(
        "Minutes", "Body", "news@example.com", ["ann@example.com", "bob@example.com"]
    )
    mailserver.defer("bob@example.com", code=451, reply="4.7.1 Greylisted")
    pk = Message.all_objects.get().pk

    # The new Message row only: on PostgreSQL the outcome's UPDATE and its
    # log row's INSERT are one statement, which must go through.
    retry_insert = f"INSERT INTO {connection.ops.quote_name(Message._meta.db_table)} "

    def refuse_the_retry(execute, sql, params, many, context):
        if retry_insert in sql:
            raise IntegrityError("retry refused")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(refuse_the_retry):
        run = send_queued(**BOUNDED)

    assert run.stop_reason == "database error"
    assert "retry refused" in run.error
    assert received(mailserver) == ["ann@example.com"]
    message = state(pk)
    assert (message["status"], message["attempts"]) == (MessageStatus.QUEUED, 0)
    assert message["claim_token"] is not None
    assert Message.all_objects.count() == 1
    assert not MessageLog.objects.exists()


# -- 5. the claim takes the highest priority first, batch by batch ------------------


def test_high_priority_mail_is_in_the_first_batch_of_a_long_queue(mailserver, settings):
    """Planted bug: a priority-blind claim (``MessageQuerySet.due`` ordered
    by ``due_at, id`` only, mailer/querysets.py). With more due mail than one
    batch, the email queued last at high priority goes out first, and
    medium before low, batch after batch."""
    lows = [f"low{i}@example.com" for i in range(4)]
    mediums = [f"medium{i}@example.com" for i in range(2)]
    queue(*lows, priority="low")
    queue(*mediums, priority="medium")
    queue("urgent@example.com", priority="high")

    settings.MAILER_BATCH_SIZE = 2  # seven due messages: four batches

    first = send_queued(max_messages=2)

    assert (first.batches, first.sent) == (1, 2)
    assert received(mailserver) == ["urgent@example.com", "medium0@example.com"]

    rest = send_queued(**BOUNDED)

    assert (rest.batches, rest.stop_reason) == (3, "queue empty")
    assert received(mailserver) == ["urgent@example.com", *mediums, *lows]


# -- 6. a failed message leaves the queue -------------------------------------------


def test_a_failed_message_leaves_the_queue_and_the_run_ends(mailserver):
    """Planted bug: a message failed for good but left due (``decide``
    giving ``due_in=0`` for a failure, mailer/sending/outcomes.py). The run
    claimed it again and again and never ended; bounded here, it must end
    with "queue empty" after one attempt at the refused message."""
    queue("gone@example.com", "ann@example.com")
    mailserver.reject("gone@example.com", code=550, reply="5.1.1 No such user")

    run = send_queued(**BOUNDED)

    assert (run.sent, run.failed, run.stop_reason) == (1, 1, "queue empty")
    gone = Message.all_objects.get(to_address="gone@example.com")
    assert (gone.status, gone.attempts, gone.due_at) == (MessageStatus.FAILED, 1, None)
    assert MessageLog.objects.filter(recipient="gone@example.com").count() == 1
    assert send_queued(**BOUNDED).attempted == 0
