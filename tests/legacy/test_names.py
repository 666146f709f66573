"""django-mailer's public names exist and behave as django-mailer documents
(issue 13): constants, get_priority, the managers, make_message,
Message.email, send_all/send_loop, and the commands' options."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

import mailer
from mailer.models import (
    PRIORITIES,
    PRIORITY_DEFERRED,
    PRIORITY_HIGH,
    PRIORITY_LOW,
    PRIORITY_MAPPING,
    PRIORITY_MEDIUM,
    RESULT_DONT_SEND,
    RESULT_FAILURE,
    DontSendEntry,
    LogResult,
    Message,
    MessageLog,
    MessageStatus,
    make_message,
)
from mailer.sending.engine import send_all, send_loop, send_queued

pytestmark = pytest.mark.django_db


def queue(subject: str, priority=None, to: str = "ann@example.com") -> None:
    mailer.send_mail(subject, "Body", "site@example.com", [to], priority=priority)


def test_priority_constants_are_django_mailers():
    assert (PRIORITY_HIGH, PRIORITY_MEDIUM, PRIORITY_LOW, PRIORITY_DEFERRED) == (
        1,
        2,
        3,
        4,
    )
    assert PRIORITIES == [(1, "high"), (2, "medium"), (3, "low"), (4, "deferred")]
    assert PRIORITY_MAPPING == {"high": 1, "medium": 2, "low": 3, "deferred": 4}


def test_get_priority():
    assert mailer.get_priority(None) == PRIORITY_MEDIUM
    assert mailer.get_priority(PRIORITY_LOW) == 3
    assert mailer.get_priority("high") == 1
    assert mailer.get_priority("4") == PRIORITY_DEFERRED
    for bad in (0, 5, "urgent", True):
        with pytest.raises(ValueError, match="Invalid priority"):
            mailer.get_priority(bad)


def test_message_objects_is_the_queue_and_all_objects_the_table(mailserver):
    """In django-mailer sent mail leaves ``Message``; code counting the queue
    with ``Message.objects`` keeps its meaning. The history stays in
    ``all_objects`` (the admin's and the engine's manager)."""
    queue("one")
    queue("two")
    assert Message.objects.count() == 2
    assert send_queued(max_messages=1).sent == 1
    assert Message.objects.count() == 1
    assert Message.all_objects.count() == 2
    assert Message._default_manager is Message.all_objects
    sent = Message.all_objects.get(status=MessageStatus.SENT)
    with pytest.raises(Message.DoesNotExist):
        Message.objects.get(pk=sent.pk)


def test_the_queue_managers_filter_uses_the_claim_index():
    """``Message.objects``' condition is the claim index's own (``due_at IS
    NOT NULL``), so filtering through it costs no scan of the history."""
    sql = str(Message.objects.due().query)
    assert '"due_at" IS NOT NULL' in sql


def test_priority_manager_methods(mailserver):
    queue("h", PRIORITY_HIGH)
    queue("m", PRIORITY_MEDIUM)
    queue("l", "low")
    queue("held", PRIORITY_DEFERRED)
    subjects = lambda qs: sorted(qs.values_list("subject", flat=True))  # noqa: E731
    assert subjects(Message.objects.high_priority()) == ["h"]
    assert subjects(Message.objects.medium_priority()) == ["held", "m"]
    assert subjects(Message.objects.low_priority()) == ["l"]
    assert subjects(Message.objects.deferred()) == ["held"]
    assert subjects(Message.objects.non_deferred()) == ["h", "l", "m"]
    send_queued()
    assert subjects(Message.objects.high_priority()) == []  # sent: left the queue
    assert subjects(Message.objects.deferred()) == ["held"]


def test_retry_deferred_manager_method_gives_medium_priority(mailserver):
    queue("held high", PRIORITY_DEFERRED)
    Message.objects.update(priority=PRIORITY_HIGH)
    assert Message.objects.retry_deferred() == 1
    message = Message.objects.get()
    assert (message.status, message.priority) == (MessageStatus.QUEUED, 2)
    assert Message.objects.retry_deferred() == 0
    assert send_queued().sent == 1


def test_message_defer_holds_it_until_retry_deferred(mailserver):
    queue("later")
    message = Message.objects.get()
    message.defer()
    assert send_queued().sent == 0
    assert Message.objects.deferred().count() == 1
    Message.objects.retry_deferred()
    assert send_queued().sent == 1


def test_purge_old_entries_deletes_successes_by_default():
    old = timezone.now() - timedelta(days=10)
    for result in LogResult:
        MessageLog.objects.create(recipient="a@example.com", result=result)
        MessageLog.objects.create(
            recipient="a@example.com", result=result, created_at=old
        )
    assert MessageLog.objects.purge_old_entries(5) == 1
    # django-mailer's "failure": every attempt that did not deliver.
    assert MessageLog.objects.purge_old_entries(5, [RESULT_FAILURE]) == 2
    assert MessageLog.objects.purge_old_entries(5, [RESULT_DONT_SEND]) == 1
    # Left: every result django-mailer has no name for (cancelled, skipped at
    # expansion, in doubt, the bounce and complaint events).
    assert MessageLog.objects.filter(created_at=old).count() == len(LogResult) - 4
    with pytest.raises(ValueError, match="Unknown log result '9'"):
        MessageLog.objects.purge_old_entries(5, ["9"])


def test_dont_send_entry_has_address():
    DontSendEntry.objects.create(address="Ann@Example.com")
    assert DontSendEntry.objects.has_address("ann@example.com")
    assert DontSendEntry.objects.has_address("Ann <ANN@EXAMPLE.COM>")
    assert not DontSendEntry.objects.has_address("bob@example.com")


def test_make_message_filters_the_dont_send_list_and_queues_on_save(mailserver):
    DontSendEntry.objects.create(address="blocked@example.com")
    message = make_message(
        subject="Made",
        body="Body",
        from_email="site@example.com",
        to=["ann@example.com", "blocked@example.com"],
        bcc=["Blocked@Example.com", "bob@example.com"],
        headers={"X-Tag": "t"},
        priority=PRIORITY_HIGH,
    )
    assert message.pk is None and Message.objects.count() == 0
    assert message.email.to == ["ann@example.com"]
    message.save()
    assert send_queued().sent == 1
    [received] = mailserver.messages
    assert sorted(received.rcpt_tos) == ["ann@example.com", "bob@example.com"]
    assert received.message["X-Tag"] == "t"


def test_make_message_to_blocked_addresses_only_is_stored_suppressed(mailserver):
    DontSendEntry.objects.create(address="blocked@example.com")
    message = make_message(subject="No", to=["blocked@example.com"])
    message.save()
    assert Message.objects.count() == 0
    assert Message.all_objects.get().status == MessageStatus.SUPPRESSED
    assert send_queued().sent == 0 and mailserver.count == 0


def test_message_email_can_be_read_and_replaced(mailserver):
    from django.core.mail import EmailMultiAlternatives

    queue("Before", to="ann@example.com")
    message = Message.objects.get()
    assert (message.email.subject, message.email.to) == ("Before", ["ann@example.com"])
    replacement = EmailMultiAlternatives(
        "After", "Text", "site@example.com", ["bob@example.com"]
    )
    replacement.attach_alternative("<p>HTML</p>", "text/html")
    message.email = replacement
    message.save()
    send_queued()
    [received] = mailserver.messages
    assert received.rcpt_tos == ["bob@example.com"]
    assert received.message["Subject"] == "After"
    assert received.message.get_body(("html",)).get_content().strip() == "<p>HTML</p>"


def test_send_all_sends_the_queue_and_refuses_a_queryset(mailserver):
    queue("one")
    queue("two")
    result = send_all()
    assert result.sent == 2 and mailserver.count == 2
    with pytest.raises(NotImplementedError, match="send_all\\(queryset\\)"):
        send_all(Message.all_objects.all())


def test_send_loop_sends_and_sleeps_when_idle(mailserver, settings):
    queue("one")
    naps = []
    send_loop(should_stop=lambda: len(naps) >= 1, sleep=naps.append)
    assert mailserver.count == 1
    assert naps == [30.0]  # django-mailer's default MAILER_EMPTY_QUEUE_SLEEP


def command(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_send_mail_cron_option_is_quiet_when_nothing_happened(mailserver):
    assert command("send_mail", "-c", "1") == ""
    assert command("send_mail", "--cron", "0").startswith("sent 0,")
    queue("one")
    assert command("send_mail", "--cron=1").startswith("sent 1,")


def test_retry_deferred_cron_option(mailserver):
    assert command("retry_deferred", "-c", "1") == ""
    queue("held", PRIORITY_DEFERRED)
    assert (
        command("retry_deferred", "-c", "1") == "1 deferred message(s) queued again\n"
    )


def test_purge_mail_log_takes_django_mailers_result_names():
    old = timezone.now() - timedelta(days=40)
    for result in (LogResult.SENT, LogResult.DEFERRED, LogResult.FAILED):
        MessageLog.objects.create(
            recipient="a@example.com", result=result, created_at=old
        )
    assert command("purge_mail_log", "30", "-r", "failure") == "2 log entries deleted\n"
    assert command("purge_mail_log", "30", "--result", "all") == "1 log entry deleted\n"
