"""Bounded time: no relay can make a run hang. EMAIL_TIMEOUT unset (Django's
default: wait for ever) falls back to MAILER_SMTP_TIMEOUT; one message's whole
exchange is bounded by it; --max-seconds and SIGTERM end a run within their
limit plus one timeout; errors name the relay. Real send_mail processes
against the real SMTP server on 127.0.0.1."""

from __future__ import annotations

import signal

import pytest
from django.core.checks import run_checks

from mailer.models import LogResult, Message, MessageLog, MessageStatus
from mailer.sending.engine import send_queued
from mailer.sending.smtp import SendingConnection
from mailer.testing.mailconfig import set_smtp_timeout
from tests.conftest import run_command
from tests.faultlib import (
    addresses,
    fill_single,
    nothing_claimed,
    start,
    summary,
    wait_until,
)

pytestmark = pytest.mark.django_db(transaction=True)

#: The SMTP timeout of the worker processes here (seconds).
TIMEOUT = 1


@pytest.fixture
def env(worker_env) -> dict[str, str]:
    """A worker with Django's default EMAIL_TIMEOUT (None) and a 1 s
    MAILER_SMTP_TIMEOUT."""
    return {
        **worker_env,
        "MAILER_TEST_EMAIL_TIMEOUT": "none",
        "MAILER_TEST_SMTP_TIMEOUT": str(TIMEOUT),
    }


def test_without_email_timeout_the_mailer_timeout_applies(settings):
    set_smtp_timeout(settings, None)
    if hasattr(settings, "MAILERS"):
        settings.MAILERS["smtp"]["OPTIONS"]["timeout"] = None
    assert SendingConnection().timeout == 15
    settings.MAILER_SMTP_TIMEOUT = 4
    assert SendingConnection().timeout == 4


def test_a_silent_relay_ends_the_run_with_the_relay_named_and_exit_2(env, smtp_server):
    """It accepts the TCP connection and never greets. Before: send_mail
    --max-seconds 5 never ended and ignored SIGTERM."""
    fill_single(addresses(5, "silent"))
    smtp_server.silent()

    done = run_command(env, "send_mail", "--max-seconds", "2", timeout=60)

    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        f"CommandError: cannot connect to 127.0.0.1:{smtp_server.port}: "
        f"timed out after {TIMEOUT} s\n"
    )
    result = summary(done.stdout)
    assert result["stopped"] == "mail server unreachable"
    assert result["seconds"] <= 2 + TIMEOUT + 1  # the run's own clock
    assert set(Message.all_objects.values_list("attempts", flat=True)) == {0}
    assert nothing_claimed()


def test_a_relay_slow_on_every_reply_cannot_stretch_one_message(env, smtp_server):
    """Each reply comes 0.6 s late, just under the 1 s timeout: one message
    (greeting, EHLO, MAIL, RCPT, DATA, final reply) would take 3.6 s. Its
    budget is one timeout: the run stops, burns nothing, exits non-zero."""
    fill_single(addresses(3, "slowpoke"))
    smtp_server.delay_replies(0.6)

    done = run_command(env, "send_mail", "--max-seconds", "2", timeout=60)

    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(
        f"CommandError: mail server 127.0.0.1:{smtp_server.port} not answering: "
        f"timed out after {TIMEOUT} s waiting for the reply to "
    )
    result = summary(done.stdout)
    assert result["seconds"] <= 2 + TIMEOUT + 1
    assert smtp_server.count == 0
    assert set(Message.all_objects.values_list("attempts", flat=True)) == {0}
    assert nothing_claimed()
    assert not MessageLog.objects.exists()


def test_sigterm_during_a_stalled_reply_ends_the_run(env, smtp_server):
    """The relay stores the message and never answers; SIGTERM arrives while
    the worker waits. The wait ends at the timeout: the message is recorded in
    doubt, the rest of the batch given back, the process exits 0."""
    fill_single(addresses(20, "stall"))
    smtp_server.stall_after_data(None)
    worker = start(env, "send_mail", "--batch-size", "20")
    assert wait_until(lambda: smtp_server.count >= 1 or worker.poll() is not None, 30)
    worker.send_signal(signal.SIGTERM)
    out, err = worker.communicate(timeout=30)

    assert worker.returncode == 0, err
    result = summary(out)
    assert result["stopped"] == "stop requested"
    assert ", in doubt 1 in " in out
    assert smtp_server.count == 1
    assert nothing_claimed()
    [doubtful] = Message.all_objects.filter(status=MessageStatus.IN_DOUBT)
    assert doubtful.attempts == 1
    assert MessageLog.objects.get().result == LogResult.IN_DOUBT
    assert Message.all_objects.filter(status=MessageStatus.QUEUED).count() == 19


def test_a_lease_shorter_than_three_timeouts_is_refused(settings):
    set_smtp_timeout(settings, 20)
    settings.MAILER_LEASE_SECONDS = 45
    if hasattr(settings, "MAILERS"):
        settings.MAILERS["smtp"]["OPTIONS"]["timeout"] = 20
    errors = [e for e in run_checks() if e.id == "mailer.E010"]
    assert len(errors) == 1
    assert "shorter than 3 SMTP timeouts (3 x 20 s)" in errors[0].msg
    settings.MAILER_LEASE_SECONDS = 60
    assert not [e for e in run_checks() if e.id == "mailer.E010"]


def test_the_default_lease_is_short_and_fits_the_default_timeout(settings):
    del settings.MAILER_LEASE_SECONDS
    set_smtp_timeout(settings, None)
    if hasattr(settings, "MAILERS"):
        settings.MAILERS["smtp"]["OPTIONS"]["timeout"] = None
    from mailer.conf import conf

    assert conf.MAILER_LEASE_SECONDS == 45
    assert not [e for e in run_checks() if e.id == "mailer.E010"]
    # A site with EMAIL_TIMEOUT = 30 gets a lease of 3 timeouts, not an error.
    set_smtp_timeout(settings, 30)
    if hasattr(settings, "MAILERS"):
        settings.MAILERS["smtp"]["OPTIONS"]["timeout"] = 30
    assert conf.MAILER_LEASE_SECONDS == 90
    assert not [e for e in run_checks() if e.id == "mailer.E010"]


def test_in_process_the_message_budget_bounds_a_slow_relay(mailserver, settings):
    set_smtp_timeout(settings, 0.5)
    if hasattr(settings, "MAILERS"):
        settings.MAILERS["smtp"]["OPTIONS"]["timeout"] = 0.5
    fill_single(addresses(2, "budget"))
    mailserver.delay_replies(0.3, greeting=False)

    result = send_queued()

    assert result.stop_reason == "mail server unreachable"
    assert "not answering: timed out after 0.5 s" in result.error
    assert result.released == 2
