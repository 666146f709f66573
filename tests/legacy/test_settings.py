"""Every django-mailer 2.3 setting means what it meant, or a check says why
it is not needed (issue 13). One test per setting, against the real SMTP
test server."""

from __future__ import annotations

import smtplib
import time
from io import StringIO

import pytest
from django.core import mail
from django.core.checks import run_checks
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

import mailer
from mailer.backend import DbBackend
from mailer.legacy.api import send_loop
from mailer.models import Message, MessageLog, MessageStatus
from mailer.sending import engine
from mailer.sending.engine import Limits, retry_deferred, send_queued

pytestmark = pytest.mark.django_db


def queue(*recipients: str, priority: str | None = None) -> None:
    for recipient in recipients:
        mailer.send_mail("Hi", "Body", "site@example.com", [recipient], priority)


def check_ids() -> set[str]:
    return {message.id for message in run_checks()}


def test_email_throttle_is_seconds_of_pause_between_messages(
    mailserver, settings, monkeypatch
):
    """django-mailer: MAILER_EMAIL_THROTTLE = 4 sleeps 4 s after each message.
    Read as a rate it would send 16 times faster than asked (issue 13)."""
    settings.MAILER_EMAIL_THROTTLE = 0.01
    pauses = []

    class RecordingTime:
        """The engine's ``time`` module, remembering each sleep."""

        def __getattr__(self, name):
            return getattr(time, name)

        def sleep(self, seconds: float) -> None:
            pauses.append(seconds)
            time.sleep(seconds)

    monkeypatch.setattr(engine, "time", RecordingTime())
    queue("a@example.com", "b@example.com", "c@example.com")
    result = send_queued()
    assert result.sent == 3 and mailserver.count == 3
    # Between the three messages; each sleep is what is left of 0.01 s.
    assert len(pauses) == 2 and all(0.005 < p <= 0.01 for p in pauses)
    limits = Limits.from_settings()
    assert (limits.pause, limits.throttle) == (0.01, None)


def test_our_rate_has_its_own_name(settings):
    settings.MAILER_RATE = 20
    settings.MAILER_EMAIL_THROTTLE = 4
    limits = Limits.from_settings()
    assert limits.throttle == 20  # messages per second
    assert limits.pause == 4.0  # seconds after each message


def test_pause_send_keeps_the_queue(mailserver, settings):
    settings.MAILER_PAUSE_SEND = True
    queue("a@example.com")
    out = StringIO()
    call_command("send_mail", stdout=out)
    assert out.getvalue() == "sending is paused (MAILER_PAUSE_SEND); nothing sent\n"
    assert mailserver.count == 0
    assert Message.objects.count() == 1

    looks = []
    send_loop(should_stop=lambda: len(looks) >= 2, sleep=looks.append)
    assert looks == [30.0, 30.0] and mailserver.count == 0

    settings.MAILER_PAUSE_SEND = False
    call_command("send_mail", stdout=StringIO())
    assert mailserver.count == 1


def test_email_max_deferred_ends_the_run(mailserver, settings):
    settings.MAILER_EMAIL_MAX_DEFERRED = 2
    mailserver.defer(["d1@example.com", "d2@example.com", "d3@example.com"])
    queue("d1@example.com", "d2@example.com", "d3@example.com", "ok@example.com")
    result = send_queued()
    assert (result.deferred, result.sent, result.stop_reason) == (
        2,
        0,
        "deferred limit",
    )
    assert Message.objects.non_deferred().count() == 2  # d3 and ok, untouched


def test_email_max_retries_bounds_the_retries(mailserver, settings):
    """django-mailer: retry_deferred retries a message at most
    MAILER_EMAIL_MAX_RETRIES times. Here: 1 retry = 2 attempts, then failed."""
    settings.MAILER_EMAIL_MAX_RETRIES = 1
    mailserver.defer("busy@example.com")
    queue("busy@example.com")
    assert send_queued().deferred == 1
    assert retry_deferred() == 1
    assert send_queued().failed == 1
    message = Message.all_objects.get()
    assert (message.status, message.attempts) == (MessageStatus.FAILED, 2)
    assert retry_deferred() == 0


def test_email_max_retries_leaves_a_message_that_used_them(settings):
    queue("x@example.com")
    Message.all_objects.update(status=MessageStatus.DEFERRED, attempts=3)
    settings.MAILER_EMAIL_MAX_RETRIES = 2
    assert Message.objects.retry_deferred() == 0
    settings.MAILER_EMAIL_MAX_RETRIES = 3
    assert Message.objects.retry_deferred() == 1


calls: list = []


def failing_handler(connection, message, exc):
    """A django-mailer style handler: give up on any error, drop the
    connection."""
    calls.append((connection, message.email.subject, message.to_addresses, exc))
    return None, "failed"


def test_error_handler_is_called_with_django_mailers_arguments(mailserver, settings):
    settings.MAILER_ERROR_HANDLER = f"{__name__}.failing_handler"
    calls.clear()
    mailserver.defer("busy@example.com")
    queue("busy@example.com", "ok@example.com")
    result = send_queued()
    assert (result.sent, result.deferred, result.failed) == (1, 0, 1)
    [(connection, subject, to, exc)] = calls
    assert hasattr(connection, "send_messages")  # the sending backend
    assert (subject, to) == ("Hi", ["busy@example.com"])
    assert isinstance(exc, smtplib.SMTPRecipientsRefused)
    failed = MessageLog.objects.get(result=3)
    assert failed.reply.endswith("(MAILER_ERROR_HANDLER: failed)")
    assert result.connections == 2  # the handler's None reconnected


def test_empty_queue_sleep_is_send_loops_idle_sleep(mailserver, settings):
    settings.MAILER_EMPTY_QUEUE_SLEEP = 7
    naps = []

    def nap(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) == 1:
            queue("late@example.com")

    send_loop(should_stop=lambda: mailserver.count >= 1 or len(naps) > 3, sleep=nap)
    assert naps == [7.0]
    assert mailserver.count == 1


def test_email_log_message_data_is_named_by_a_check(settings):
    settings.MAILER_EMAIL_LOG_MESSAGE_DATA = True
    assert "mailer.W132" in check_ids()
    settings.MAILER_EMAIL_LOG_MESSAGE_DATA = False
    assert "mailer.W132" not in check_ids()


@pytest.mark.parametrize(
    "name,value",
    [
        ("MAILER_USE_FILE_LOCK", True),
        ("MAILER_LOCK_PATH", "/tmp/send_mail"),
        ("MAILER_LOCK_WAIT_TIMEOUT", -1),
    ],
)
def test_lock_file_settings_are_named_by_a_check(settings, name, value):
    assert "mailer.W131" not in check_ids()
    setattr(settings, name, value)
    [warning] = [m for m in run_checks() if m.id == "mailer.W131"]
    assert name in warning.msg and "database leases" in warning.msg


def test_messages_batch_size_caps_rows_per_insert(settings):
    settings.MAILER_MESSAGES_BATCH_SIZE = 2
    emails = [
        mail.EmailMessage("Hi", "Body", "s@example.com", [f"r{i}@example.com"])
        for i in range(5)
    ]
    with CaptureQueriesContext(connection) as queries:
        assert DbBackend().send_messages(emails) == 5
    inserts = [
        q for q in queries if q["sql"].startswith('INSERT INTO "mailer_message"')
    ]
    assert len(inserts) == 3
    assert Message.objects.count() == 5


def test_email_max_batch_limits_one_run(mailserver, settings):
    settings.MAILER_EMAIL_MAX_BATCH = 2
    queue("a@example.com", "b@example.com", "c@example.com")
    assert send_queued().sent == 2
    assert Message.objects.count() == 1


def test_email_backend_is_what_really_sends(settings, smtp_server):
    """MAILER_EMAIL_BACKEND names the backend that sends (locmem here)."""
    settings.MAILER_EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    queue("a@example.com")
    assert send_queued().sent == 1
    assert [m.to for m in mail.outbox] == [["a@example.com"]]


def test_a_loop_worker_waits_out_pause_send(mailserver, settings):
    """``send_mail --loop`` (a supervised worker) idles while paused instead
    of exiting, and sends once the pause is lifted."""
    import os
    import signal
    import threading
    import time

    settings.MAILER_PAUSE_SEND = True
    queue("a@example.com")
    seen_while_paused = []

    def lift_the_pause_then_stop() -> None:
        # The worker idles (sleeping, or waiting on LISTEN on PostgreSQL)
        # for a few rounds; nothing may go out until the pause is lifted.
        time.sleep(0.5)
        seen_while_paused.append(mailserver.count)
        settings.MAILER_PAUSE_SEND = False
        mailserver.wait_for(1, timeout=20)
        os.kill(os.getpid(), signal.SIGTERM)  # the command's own handler

    helper = threading.Thread(target=lift_the_pause_then_stop, daemon=True)
    helper.start()
    out = StringIO()
    call_command("send_mail", "--loop", "--idle-seconds", "0.01", stdout=out)
    helper.join(timeout=5)
    assert seen_while_paused == [0]
    assert mailserver.count == 1
    assert out.getvalue().startswith("sent 1,")
