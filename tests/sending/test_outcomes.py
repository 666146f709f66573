"""What a reply means, as tables (mailer/sending/outcomes.py): one row per
case of ``classify``, ``from_code``, ``sent``, ``refused_service``,
``connect_failure``, ``backoff``, ``next_try``, ``in_doubt`` and ``decide``.
``relay_trouble`` and ``enhanced_code`` have their tables in
tests/test_relay_trouble.py."""

from __future__ import annotations

import smtplib
import socket
import ssl
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import pytest

from mailer.models import LogResult, MessageStatus
from mailer.sending import outcomes
from mailer.sending.outcomes import Outcome, Verdict
from mailer.sending.transport import ExchangeTimeout, InDoubt

SENT, DEFERRED, FAILED = Verdict.SENT, Verdict.DEFERRED, Verdict.FAILED
RECONNECT, STOP, IN_DOUBT = Verdict.RECONNECT, Verdict.STOP, Verdict.IN_DOUBT

#: A fixed "database now" for the time rules.
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=dt_timezone.utc)


@pytest.fixture(autouse=True)
def _defaults(settings):
    """The shipped retry settings, whatever the test settings say."""
    settings.MAILER_RETRY_BACKOFF_SECONDS = 60
    settings.MAILER_RETRY_BACKOFF_MAX_SECONDS = 3600
    settings.MAILER_MAX_RETRY_SECONDS = 3 * 86400
    settings.MAILER_MAX_ATTEMPTS = None
    settings.MAILER_IN_DOUBT_RETRY_SECONDS = 1200
    settings.MAILER_IN_DOUBT_MAX_RETRIES = 1
    return settings


def refused(**recipients: tuple[int, bytes]) -> smtplib.SMTPRecipientsRefused:
    return smtplib.SMTPRecipientsRefused(
        {f"{name}@example.com": reply for name, reply in recipients.items()}
    )


# -- classify: an exception raised while sending one message ------------------------


@pytest.mark.parametrize(
    "error, verdict, code, reply, no_such_user",
    [
        # No reply after the final ".": maybe delivered, never resent at once.
        (
            InDoubt(TimeoutError("timed out"), host="relay:25", seconds=15),
            IN_DOUBT,
            None,
            "no reply from relay:25 after the end of the message (timed out "
            "after 15 s); the relay may have accepted it",
            False,
        ),
        # The budget ran out before the final ".": a relay too slow, a stop
        # (an ExchangeTimeout is also an SMTPServerDisconnected: order matters).
        (
            ExchangeTimeout("DATA", host="relay:25", seconds=15),
            STOP,
            None,
            "mail server relay:25 not answering: timed out after 15 s waiting "
            "for the reply to DATA",
            False,
        ),
        # Every recipient refused: the mildest reply decides.
        (
            refused(ann=(550, b"5.1.1 No such user")),
            FAILED,
            550,
            "5.1.1 No such user",
            True,
        ),
        (
            refused(ann=(550, b"5.1.1 No such user"), bob=(451, b"4.7.1 Greylisted")),
            DEFERRED,
            451,
            "4.7.1 Greylisted",
            False,
        ),
        (
            refused(ann=(451, b"4.7.1 Greylisted"), bob=(421, b"4.4.2 Closing")),
            RECONNECT,
            421,
            "4.4.2 Closing",
            False,
        ),
        (
            refused(ann=(553, b"5.7.1 Relaying denied"), bob=(550, b"User unknown")),
            FAILED,
            553,
            "5.7.1 Relaying denied",
            False,
        ),
        (refused(), DEFERRED, None, "{}", False),
        # Replies that carry a code: from_code judges them.
        (
            smtplib.SMTPSenderRefused(452, b"4.3.1 Storage", "news@example.com"),
            DEFERRED,
            452,
            "4.3.1 Storage",
            False,
        ),
        (
            smtplib.SMTPSenderRefused(553, b"5.7.1 Sender denied", "n@example.com"),
            FAILED,
            553,
            "5.7.1 Sender denied",
            False,
        ),
        (
            smtplib.SMTPDataError(554, b"5.6.0 Content rejected"),
            FAILED,
            554,
            "5.6.0 Content rejected",
            False,
        ),
        (
            smtplib.SMTPDataError(421, b"4.4.2 Timeout"),
            RECONNECT,
            421,
            "4.4.2 Timeout",
            False,
        ),
        (
            smtplib.SMTPDataError(550, "Mailbox unavailable"),
            FAILED,
            550,
            "Mailbox unavailable",
            True,
        ),
        (
            smtplib.SMTPAuthenticationError(535, b"5.7.8 Bad credentials"),
            FAILED,
            535,
            "5.7.8 Bad credentials",
            False,
        ),
        (smtplib.SMTPHeloError(501, b"Bad HELO"), FAILED, 501, "Bad HELO", False),
        (smtplib.SMTPResponseException(699, b"odd"), DEFERRED, 699, "odd", False),
        # The link broke mid-message: reconnect and try the same message.
        (
            smtplib.SMTPServerDisconnected(),
            RECONNECT,
            None,
            "server disconnected",
            False,
        ),
        (
            smtplib.SMTPServerDisconnected("Connection unexpectedly closed"),
            RECONNECT,
            None,
            "Connection unexpectedly closed",
            False,
        ),
        (
            ConnectionResetError(104, "Connection reset by peer"),
            RECONNECT,
            None,
            "ConnectionResetError: [Errno 104] Connection reset by peer",
            False,
        ),
        (
            BrokenPipeError(32, "Broken pipe"),
            RECONNECT,
            None,
            "BrokenPipeError: [Errno 32] Broken pipe",
            False,
        ),
        (
            TimeoutError("timed out"),
            RECONNECT,
            None,
            "TimeoutError: timed out",
            False,
        ),
        (
            ssl.SSLError(1, "[SSL: BAD_RECORD_MAC] bad record mac"),
            RECONNECT,
            None,
            "SSLError: [SSL: BAD_RECORD_MAC] bad record mac",
            False,
        ),
        # Django's ValueError for an address it cannot encode: for good.
        (
            ValueError("Invalid address; only ann can be encoded"),
            FAILED,
            None,
            "cannot send: Invalid address; only ann can be encoded",
            False,
        ),
        # Anything else (a non-SMTP backend's API error): worth retrying.
        (RuntimeError("HTTP 503"), DEFERRED, None, "RuntimeError: HTTP 503", False),
        (KeyError("id"), DEFERRED, None, "KeyError: 'id'", False),
        (OSError("disk"), DEFERRED, None, "OSError: disk", False),
    ],
)
def test_classify(error, verdict, code, reply, no_such_user):
    assert outcomes.classify(error) == Outcome(
        verdict, code, reply, no_such_user=no_such_user
    )


# -- from_code: one SMTP reply -------------------------------------------------------


@pytest.mark.parametrize(
    "code, reply, verdict, no_such_user",
    [
        (250, b"2.0.0 Ok: queued", SENT, False),
        (251, "User not local; will forward", SENT, False),
        (421, b"4.3.2 Service shutting down", RECONNECT, False),
        (450, b"4.2.1 Mailbox busy", DEFERRED, False),
        (451, b"4.7.1 Greylisted", DEFERRED, False),
        (452, b"4.2.2 Mailbox full", DEFERRED, False),
        (499, b"", DEFERRED, False),
        (550, b"5.1.1 <ann@example.com>: Recipient address rejected", FAILED, True),
        (550, b"No such user here", FAILED, True),
        (550, b"no such mailbox", FAILED, True),
        (550, b"User unknown in virtual mailbox table", FAILED, True),
        (550, b"unknown user", FAILED, True),
        (550, b"Mailbox not found", FAILED, True),
        (550, b"mailbox unavailable", FAILED, True),
        (550, b"Mailbox does not exist", FAILED, True),
        (550, b"5.1.10 Recipient address rejected: null MX", FAILED, False),
        (550, b"5.7.1 Relaying denied", FAILED, False),
        (552, b"5.3.4 Message too big", FAILED, False),
        (554, b"5.7.1 Spam", FAILED, False),
        (599, b"", FAILED, False),
        # Not a final reply at all: retried rather than lost.
        (354, b"End data with <CR><LF>.<CR><LF>", DEFERRED, False),
        (199, b"", DEFERRED, False),
        (600, b"", DEFERRED, False),
    ],
)
def test_from_code(code, reply, verdict, no_such_user):
    text = reply.decode() if isinstance(reply, bytes) else reply
    assert outcomes.from_code(code, reply) == Outcome(
        verdict, code, text, no_such_user=no_such_user
    )


@pytest.mark.parametrize(
    "refusals, reply",
    [
        ({}, ""),
        (
            {"bob@example.com": (450, b"4.2.1 Busy")},
            "bob@example.com refused: 450 4.2.1 Busy",
        ),
        (
            {
                "bob@example.com": (550, b"5.1.1 No such user"),
                "cy@example.com": (451, "4.7.1 Greylisted"),
            },
            "bob@example.com refused: 550 5.1.1 No such user; "
            "cy@example.com refused: 451 4.7.1 Greylisted",
        ),
    ],
)
def test_sent(refusals, reply):
    assert outcomes.sent(refusals) == Outcome(
        SENT, 250, reply, refused=refusals or None
    )


# -- refused_service: the server is not taking mail at all -----------------------------


@pytest.mark.parametrize(
    "error, fresh, reason",
    [
        (
            smtplib.SMTPSenderRefused(421, b"4.3.2 Try later", "n@example.com"),
            True,
            "mail server not accepting mail: 421 4.3.2 Try later",
        ),
        (
            smtplib.SMTPSenderRefused(530, b"5.7.0 Authentication required", "n@x"),
            True,
            "mail server not accepting mail: 530 5.7.0 Authentication required",
        ),
        # After a message went through, a 421 is about this connection only.
        (smtplib.SMTPSenderRefused(421, b"4.3.2 Later", "n@x"), False, None),
        (smtplib.SMTPSenderRefused(530, b"5.7.0 Auth", "n@x"), False, None),
        # Other codes, or a 421 at another stage, are judged per message.
        (smtplib.SMTPSenderRefused(451, b"4.3.0 Later", "n@x"), True, None),
        (smtplib.SMTPSenderRefused(550, b"5.7.1 No", "n@x"), True, None),
        (refused(ann=(421, b"4.3.2 Later")), True, None),
        (smtplib.SMTPDataError(421, b"4.3.2 Later"), True, None),
        (smtplib.SMTPServerDisconnected("gone"), True, None),
    ],
)
def test_refused_service(error, fresh, reason):
    assert outcomes.refused_service(error, fresh_connection=fresh) == reason


# -- connect_failure: the server cannot be reached -----------------------------------


@pytest.mark.parametrize(
    "error, timeout, reason",
    [
        (
            ConnectionRefusedError(111, "Connection refused"),
            15,
            "cannot connect to relay:25: [Errno 111] Connection refused",
        ),
        (
            TimeoutError("timed out"),
            15,
            "cannot connect to relay:25: timed out after 15 s",
        ),
        (TimeoutError(), 2.5, "cannot connect to relay:25: timed out after 2.5 s"),
        (TimeoutError(), 0, "cannot connect to relay:25: TimeoutError"),
        (
            OSError("connect timed out"),
            10,
            "cannot connect to relay:25: timed out after 10 s",
        ),
        (
            socket.gaierror(-2, "Name or service not known"),
            15,
            "cannot connect to relay:25: [Errno -2] Name or service not known",
        ),
        (
            ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] nope"),
            15,
            "cannot connect to relay:25: [SSL: CERTIFICATE_VERIFY_FAILED] nope",
        ),
        (
            smtplib.SMTPConnectError(554, b"No service"),
            15,
            "cannot connect to relay:25: (554, b'No service')",
        ),
        (
            smtplib.SMTPAuthenticationError(535, b"5.7.8 Bad credentials"),
            15,
            "cannot connect to relay:25: (535, b'5.7.8 Bad credentials')",
        ),
        (
            smtplib.SMTPServerDisconnected("Connection unexpectedly closed"),
            15,
            "cannot connect to relay:25: Connection unexpectedly closed",
        ),
        (
            smtplib.SMTPHeloError(501, b"Bad HELO"),
            15,
            "cannot connect to relay:25: (501, b'Bad HELO')",
        ),
        (
            smtplib.SMTPNotSupportedError("STARTTLS extension not supported"),
            15,
            "cannot connect to relay:25: STARTTLS extension not supported",
        ),
        # Not about reaching the server: the caller raises it. (Every
        # smtplib error is an OSError, so none of them is among these.)
        (ValueError("bad port"), 15, None),
        (RuntimeError("bug"), 15, None),
        (TypeError("'NoneType' object is not iterable"), 15, None),
        (KeyError("EMAIL_HOST"), 15, None),
    ],
)
def test_connect_failure(error, timeout, reason):
    assert outcomes.connect_failure(error, where="relay:25", timeout=timeout) == reason


# -- backoff and the retry window -----------------------------------------------------


@pytest.mark.parametrize(
    "attempts, seconds",
    [
        (0, 60),
        (1, 60),
        (2, 120),
        (3, 240),
        (4, 480),
        (6, 1920),
        (7, 3600),  # 3840 capped
        (8, 3600),
        (70, 3600),  # no timedelta overflow for mail retried for days
        (10**6, 3600),
    ],
)
def test_backoff(attempts, seconds):
    assert outcomes.backoff(attempts) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "base, cap, seconds",
    [(30, 3600, [30, 60, 120, 240]), (60, 100, [60, 100, 100, 100]), (5, 5, [5] * 4)],
)
def test_backoff_follows_its_settings(settings, base, cap, seconds):
    settings.MAILER_RETRY_BACKOFF_SECONDS = base
    settings.MAILER_RETRY_BACKOFF_MAX_SECONDS = cap
    assert [outcomes.backoff(n).total_seconds() for n in range(1, 5)] == seconds


H = timedelta(hours=1)
S = timedelta(seconds=1)


@pytest.mark.parametrize(
    "attempt, queued_ago, expires_in, max_attempts, due_in, reason",
    [
        (1, timedelta(0), None, None, 60, ""),
        (3, H, None, None, 240, ""),
        (2, None, None, None, 120, ""),  # queued_at unknown: no time limit
        (100, None, None, None, 3600, ""),
        # The window: the next try may fall exactly at 72 h, not after.
        (8, 71 * H, None, None, 3600, ""),
        (8, 71 * H + S, None, None, None, "gave up after 8 attempts over 71.0 hours"),
        (1, 72 * H, None, None, None, "gave up after 1 attempts over 72.0 hours"),
        # A job's expiry: a next try at or after it is not made.
        (1, H, 61 * S, None, 60, ""),
        (1, H, 60 * S, None, None, "expired at 2026-03-01 12:01 UTC"),
        (1, H, 30 * S, None, None, "expired at 2026-03-01 12:00 UTC"),
        # MAILER_MAX_ATTEMPTS caps the count when set.
        (2, H, None, 3, 120, ""),
        (3, H, None, 3, None, "gave up after 3 attempts"),
        (5, H, None, 3, None, "gave up after 5 attempts"),
    ],
)
def test_next_try(
    settings, attempt, queued_ago, expires_in, max_attempts, due_in, reason
):
    settings.MAILER_MAX_ATTEMPTS = max_attempts
    retry = outcomes.next_try(
        attempt,
        queued_at=None if queued_ago is None else NOW - queued_ago,
        now=NOW,
        expires_at=None if expires_in is None else NOW + expires_in,
    )
    expected_due = None if due_in is None else NOW + timedelta(seconds=due_in)
    assert retry == outcomes.Retry(expected_due, reason)


# -- in doubt --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "retries, events, status, due_in",
    [
        (1, 1, MessageStatus.IN_DOUBT, 1200),
        (1, 2, MessageStatus.IN_DOUBT_HELD, None),
        (0, 1, MessageStatus.IN_DOUBT_HELD, None),
        (3, 3, MessageStatus.IN_DOUBT, 1200),
        (3, 4, MessageStatus.IN_DOUBT_HELD, None),
    ],
)
def test_in_doubt(settings, retries, events, status, due_in):
    settings.MAILER_IN_DOUBT_MAX_RETRIES = retries
    lost = Outcome(IN_DOUBT, None, "no reply")
    got_status, got_due, logged = outcomes.in_doubt(events, lost)
    assert (got_status, got_due, logged.verdict) == (status, due_in, IN_DOUBT)
    if due_in is None:
        assert logged.reply == (
            f"no reply; in doubt {events} times, not retried "
            f"(MAILER_IN_DOUBT_MAX_RETRIES = {retries}); "
            "release it with retry_deferred --in-doubt"
        )
    else:
        assert logged.reply == "no reply; retried in 1200 s with the same Message-ID"


# -- decide: the rules in one place ---------------------------------------------------

GREY = Outcome(DEFERRED, 451, "4.7.1 Greylisted")
GONE = Outcome(FAILED, 550, "5.1.1 No such user", no_such_user=True)
LOST = Outcome(IN_DOUBT, None, "no reply")


@pytest.mark.parametrize(
    "outcome, attempt, in_doubt_before, queued_ago, expected, reply",
    [
        (
            Outcome(SENT, 250),
            1,
            0,
            None,
            (LogResult.SENT, MessageStatus.SENT, None, 0, "sent"),
            "",
        ),
        (
            Outcome(SENT, 250),
            2,
            1,
            None,
            (LogResult.SENT, MessageStatus.SENT, None, 0, "sent"),
            "",
        ),
        (
            LOST,
            1,
            0,
            None,
            (LogResult.IN_DOUBT, MessageStatus.IN_DOUBT, 1200, 1, "in_doubt"),
            "no reply; retried in 1200 s with the same Message-ID",
        ),
        (
            LOST,
            2,
            1,
            None,
            (LogResult.IN_DOUBT, MessageStatus.IN_DOUBT_HELD, None, 1, "in_doubt"),
            "no reply; in doubt 2 times, not retried",
        ),
        (
            GREY,
            1,
            0,
            timedelta(0),
            (LogResult.DEFERRED, MessageStatus.DEFERRED, 60, 0, "deferred"),
            "4.7.1 Greylisted",
        ),
        (
            GREY,
            4,
            0,
            H,
            (LogResult.DEFERRED, MessageStatus.DEFERRED, 480, 0, "deferred"),
            "4.7.1 Greylisted",
        ),
        # In doubt before, deferred now: retried like any deferral.
        (
            GREY,
            2,
            1,
            H,
            (LogResult.DEFERRED, MessageStatus.DEFERRED, 120, 0, "deferred"),
            "4.7.1 Greylisted",
        ),
        # Out of time: failed, or held if it may have been delivered before.
        (
            GREY,
            9,
            0,
            72 * H,
            (LogResult.FAILED, MessageStatus.FAILED, None, 0, "failed"),
            "gave up after 9 attempts over 72.0 hours: 4.7.1 Greylisted",
        ),
        (
            GREY,
            9,
            1,
            72 * H,
            (LogResult.IN_DOUBT, MessageStatus.IN_DOUBT_HELD, None, 0, "in_doubt"),
            "attempt 9 refused (451 4.7.1 Greylisted); not marked failed",
        ),
        (
            GONE,
            1,
            0,
            None,
            (LogResult.FAILED, MessageStatus.FAILED, None, 0, "failed"),
            "5.1.1 No such user",
        ),
        (
            GONE,
            2,
            1,
            None,
            (LogResult.IN_DOUBT, MessageStatus.IN_DOUBT_HELD, None, 0, "in_doubt"),
            "attempt 2 refused (550 5.1.1 No such user); not marked failed",
        ),
        (
            Outcome(FAILED, None, "cannot build message: bad template"),
            1,
            0,
            None,
            (LogResult.FAILED, MessageStatus.FAILED, None, 0, "failed"),
            "cannot build message: bad template",
        ),
    ],
)
def test_decide(outcome, attempt, in_doubt_before, queued_ago, expected, reply):
    decision = outcomes.decide(
        outcome,
        attempt=attempt,
        in_doubt_before=in_doubt_before,
        now=NOW,
        queued_at=None if queued_ago is None else NOW - queued_ago,
    )
    assert (
        decision.result,
        decision.status,
        decision.due_in,
        decision.in_doubt_added,
        decision.counter,
    ) == expected
    assert decision.outcome.reply.startswith(reply)
    # A message leaves the queue (no due time) unless it is to be tried again.
    tried_again = decision.status in (MessageStatus.DEFERRED, MessageStatus.IN_DOUBT)
    assert (decision.due_in is not None) is tried_again


def test_decide_keeps_the_no_such_user_mark_of_a_refusal():
    decision = outcomes.decide(GONE, attempt=1, in_doubt_before=0, now=NOW)
    assert decision.outcome.no_such_user is True
