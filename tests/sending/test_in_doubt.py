"""In doubt: the relay went silent after the final "." of DATA (a reply
slower than the timeout, a reset), so it may have the message. Such a message
is never sent again on the spot, is retried later with the same Message-ID,
at most MAILER_IN_DOUBT_MAX_RETRIES times, then held; it is never "failed".
Through the real SMTP server on 127.0.0.1, received bytes parsed. (Five cron
cycles of real processes against such a relay: tests/system/test_faults.py.)"""

from __future__ import annotations

from collections import Counter
from io import StringIO

import pytest
from django.core.management import call_command

import mailer
from mailer.jobs.expand import expand_pending_jobs
from mailer.jobs.services import RenderedEmail, create_job, job_progress
from mailer.models import LogResult, Message, MessageLog, MessageStatus
from mailer.sending.engine import release_in_doubt, retry_deferred, send_queued
from mailer.status import queue_status
from mailer.testing.mailconfig import set_smtp_timeout
from tests.faultlib import make_in_doubt_due, message_ids

pytestmark = pytest.mark.django_db


@pytest.fixture
def relay(mailserver, settings):
    """The test server, with a 0.5 s SMTP timeout for this process."""
    set_smtp_timeout(settings, 0.5)
    if hasattr(settings, "MAILERS"):
        settings.MAILERS["smtp"]["OPTIONS"]["timeout"] = 0.5
    return mailserver


def newsletter(*readers: str):
    job = create_job(
        content=RenderedEmail(subject="The Daily", body_text="Hello [[mj:email]]\n"),
        recipients=list(readers),
        from_email="news@example.com",
    )
    expand_pending_jobs()
    return job


def log_rows(address: str) -> list[tuple]:
    return list(
        MessageLog.objects.filter(recipient=address)
        .order_by("id")
        .values_list("result", "attempt", "message_id")
    )


def test_a_slow_final_reply_gives_at_most_two_copies_and_is_never_failed(relay):
    """The relay stores each message at "." and answers after the timeout
    (1 s against 0.5 s). Before: 3 copies per run, 15 over the cron cycle,
    ending "failed"."""
    relay.stall_after_data(1.0)
    newsletter("ann@example.com")
    mailer.send_mail("Reset", "link", "site@example.com", ["bob@example.com"], "high")

    runs = []
    for _ in range(5):  # five cron cycles: send_mail, retry_deferred
        runs.append(send_queued())
        retry_deferred()
        make_in_doubt_due()

    counts = relay.counts
    assert counts == Counter({"ann@example.com": 2, "bob@example.com": 2})
    assert [r.in_doubt for r in runs] == [2, 2, 0, 0, 0]
    assert sum(r.failed + r.sent for r in runs) == 0
    assert "in doubt 2" in runs[0].summary()
    for address in ("ann@example.com", "bob@example.com"):
        message = Message.all_objects.get(to_address=address)
        assert (message.status, message.in_doubt, message.due_at) == (
            MessageStatus.IN_DOUBT_HELD,
            2,
            None,
        )
        # Both copies carry one Message-ID, the one in the log.
        ids = message_ids(relay, address)
        assert len(ids) == 2 and ids[0] == ids[1]
        rows = log_rows(address)
        assert [(r[0], r[1]) for r in rows] == [
            (LogResult.IN_DOUBT, 1),
            (LogResult.IN_DOUBT, 2),
        ]
        assert {r[2] for r in rows} == {ids[0]}
    assert not Message.all_objects.filter(status=MessageStatus.FAILED).exists()
    reply = (
        MessageLog.objects.filter(recipient="ann@example.com").order_by("id").last()
    ).reply
    assert reply.startswith(f"no reply from 127.0.0.1:{relay.port} after the end")
    assert "timed out after 0.5 s" in reply
    assert "not retried (MAILER_IN_DOUBT_MAX_RETRIES = 1)" in reply


def test_in_doubt_is_not_resent_on_the_spot_and_waits_its_delay(relay, settings):
    settings.MAILER_IN_DOUBT_RETRY_SECONDS = 600
    relay.reset_after_data(times=1)
    newsletter("ann@example.com", "bob@example.com")

    first = send_queued()

    # The reset cost one message a reply; the other went on, on a new
    # connection; the first was not sent again.
    assert (first.sent, first.in_doubt) == (1, 1)
    assert sum(relay.counts.values()) == 2
    doubtful = Message.all_objects.get(status=MessageStatus.IN_DOUBT)
    assert doubtful.claim_token is None
    assert send_queued().attempted == 0  # not due for 10 minutes
    assert retry_deferred() == 0  # retry_deferred leaves it its delay

    make_in_doubt_due()
    second = send_queued()

    assert (second.sent, second.in_doubt) == (1, 0)
    address = doubtful.to_address
    assert relay.counts[address] == 2
    ids = message_ids(relay, address)
    assert ids[0] == ids[1]
    assert [r[0] for r in log_rows(address)] == [LogResult.IN_DOUBT, LogResult.SENT]
    doubtful.refresh_from_db()
    assert (doubtful.status, doubtful.message_id) == (MessageStatus.SENT, ids[0])


def test_the_attempt_cap_never_turns_a_message_in_doubt_into_failed(relay, settings):
    settings.MAILER_MAX_ATTEMPTS = 2
    relay.reset_after_data(times=1)
    newsletter("ann@example.com")
    send_queued()
    relay.defer(["ann@example.com"], code=452, reply="4.2.2 Mailbox full")

    for _ in range(4):
        make_in_doubt_due()
        retry_deferred()
        send_queued()

    message = Message.all_objects.get()
    assert message.status == MessageStatus.IN_DOUBT_HELD
    assert [r[0] for r in log_rows("ann@example.com")] == [
        LogResult.IN_DOUBT,
        LogResult.IN_DOUBT,
    ]
    last = MessageLog.objects.order_by("id").last()
    assert last.smtp_code == 452
    assert "may have been delivered" in last.reply
    assert relay.counts["ann@example.com"] == 1


def test_an_operator_releases_a_held_message_for_one_more_try(relay):
    relay.stall_after_data(1.0)
    mailer.send_mail("Minutes", "b", "site@example.com", ["ann@example.com"])
    for _ in range(2):
        send_queued()
        make_in_doubt_due()
    assert Message.all_objects.get().status == MessageStatus.IN_DOUBT_HELD
    assert send_queued().attempted == 0

    relay.accept_all()
    out = StringIO()
    call_command("retry_deferred", "--in-doubt", stdout=out)

    assert out.getvalue() == "1 message(s) in doubt released for one more try\n"
    assert send_queued().sent == 1
    assert Message.all_objects.get().status == MessageStatus.SENT
    ids = message_ids(relay, "ann@example.com")
    assert len(ids) == 3 and len(set(ids)) == 1
    assert release_in_doubt() == 0


def test_in_doubt_is_counted_in_the_status_and_the_job_progress(relay):
    relay.stall_after_data(1.0)
    job = newsletter("ann@example.com", "bob@example.com")
    send_queued()

    assert job_progress(job)["in_doubt"] == 2
    rendered = queue_status().render()
    assert "in doubt" in rendered.splitlines()[1]
    assert "0 sent, 0 deferred, 0 failed, 0 suppressed, 0 skipped, 2 in doubt" in (
        rendered
    )


def test_a_job_email_deferred_once_keeps_its_message_id(relay):
    """Issue 12 item 3: 451, then accepted: one Message-ID on both attempts
    (the log of the first, the bytes of the second)."""
    relay.defer(["ann@example.com"], code=451, reply="4.7.1 Greylisted", times=1)
    newsletter("ann@example.com")

    assert send_queued().deferred == 1
    retry_deferred()
    assert send_queued().sent == 1

    [received] = relay.messages
    message_id = str(received.message["Message-ID"])
    assert [r[2] for r in log_rows("ann@example.com")] == [message_id, message_id]
    assert Message.all_objects.get().message_id == message_id
    assert message_id.endswith("@news.example.com>")


def test_a_dropped_connection_before_the_end_of_data_is_retried_at_once(relay):
    """Not in doubt: the relay closed before the final "." (here, at MAIL
    after 1 message): safe to send again at once on a new connection."""
    relay.disconnect_after(1)
    newsletter("ann@example.com", "bob@example.com", "cy@example.com")

    result = send_queued()

    assert (result.sent, result.in_doubt) == (3, 0)
    assert set(relay.counts.values()) == {1}


@pytest.mark.parametrize("command", ["rcpt", "data"])
def test_a_reset_mid_pipeline_before_data_is_retried_at_once(relay, command):
    # The relay offers PIPELINING (RFC 2920) and drops the connection while
    # the MAIL/RCPT/DATA group is being answered: nothing reached it, so the
    # message goes out on a new connection in the same run, once.
    relay.hang_up_at(command, times=1)
    newsletter("ann@example.com")

    result = send_queued()

    assert (result.sent, result.in_doubt, result.deferred) == (1, 0, 0)
    assert relay.count == 1
    assert relay.connections == 2
    assert Message.all_objects.get().status == MessageStatus.SENT
