"""What an SMTP reply (or exception) means for a message, and the retry backoff.

Every sending error is judged here and nowhere else:

- 2xx: sent (some recipients of a multi-recipient message may have been
  refused; that is noted in the log, the message is still sent).
- 4xx: deferred, due again after an exponential backoff; after
  ``MAILER_MAX_ATTEMPTS`` it fails for good.
- 5xx: failed for good. A 5.1.1 "no such user" may also suppress the address.
- 421, or the server dropping the connection mid-message: the *connection* is
  bad, not the message. Reconnect and try the same message again; no attempt
  is burned. But a 421 to the first MAIL FROM of a fresh connection means the
  server is not taking mail at all: stop the run, as below.
- The server cannot be reached at all (refused, timed out, TLS or login
  failure): stop the run and give every claim back; no attempt is burned.
- No reply after the final "." of DATA was sent (a timeout, a reset, the
  connection closed): *in doubt*. The relay may have the message, so it is
  never sent again on the spot; it is tried again later
  (``MAILER_IN_DOUBT_RETRY_SECONDS``) with the same Message-ID, at most
  ``MAILER_IN_DOUBT_MAX_RETRIES`` times, then held as "in doubt, not
  retried". A message that may have been delivered is never called failed.
- The relay answers too slowly before the final "." (one message's budget,
  see ``SendingConnection.budget``, ran out): nothing was delivered; stop the
  run like for a relay that is down.
- Anything else a non-SMTP backend raises: deferred (we cannot tell a
  permanent API error from a passing one, and retrying a few times is cheaper
  than losing an email).
"""

from __future__ import annotations

import enum
import re
import smtplib
import socket
import ssl
from dataclasses import dataclass
from datetime import timedelta

from mailer.conf import settings
from mailer.sending.transport import ExchangeTimeout, InDoubt


class Verdict(enum.Enum):
    SENT = "sent"
    DEFERRED = "deferred"
    FAILED = "failed"
    RECONNECT = "reconnect"
    STOP = "stop"
    IN_DOUBT = "in doubt"


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    code: int | None = None
    reply: str = ""
    no_such_user: bool = False


_NO_SUCH_USER = re.compile(
    r"\b5\.1\.1\b|no such (user|mailbox)|user unknown|unknown user|"
    r"mailbox (not found|unavailable|does not exist)",
    re.IGNORECASE,
)


def _text(reply: bytes | str) -> str:
    if isinstance(reply, bytes):
        return reply.decode("utf-8", "replace")
    return str(reply)


def from_code(code: int, reply: bytes | str) -> Outcome:
    text = _text(reply)
    if code == 421:
        return Outcome(Verdict.RECONNECT, code, text)
    if 200 <= code < 300:
        return Outcome(Verdict.SENT, code, text)
    if 400 <= code < 500:
        return Outcome(Verdict.DEFERRED, code, text)
    if 500 <= code < 600:
        return Outcome(
            Verdict.FAILED, code, text, no_such_user=bool(_NO_SUCH_USER.search(text))
        )
    return Outcome(Verdict.DEFERRED, code, text)


def sent(refused: dict[str, tuple[int, bytes]]) -> Outcome:
    """The server accepted the message, perhaps refusing some recipients."""
    if not refused:
        return Outcome(Verdict.SENT, 250)
    notes = "; ".join(
        f"{rcpt} refused: {code} {_text(reply)}"
        for rcpt, (code, reply) in refused.items()
    )
    return Outcome(Verdict.SENT, 250, notes)


def classify(error: BaseException) -> Outcome:
    """Judge an exception raised while sending one message."""
    if isinstance(error, InDoubt):
        return Outcome(Verdict.IN_DOUBT, None, str(error))
    if isinstance(error, ExchangeTimeout):
        return Outcome(Verdict.STOP, None, str(error))
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        # Every recipient was refused. The mildest reply decides: if any
        # recipient might be accepted later, the message is worth retrying.
        replies = list(error.recipients.values())
        outcomes = [from_code(code, reply) for code, reply in replies] or [
            Outcome(Verdict.DEFERRED, None, str(error))
        ]
        for verdict in (Verdict.RECONNECT, Verdict.DEFERRED):
            for outcome in outcomes:
                if outcome.verdict is verdict:
                    return outcome
        return outcomes[0]
    if isinstance(error, smtplib.SMTPResponseException):
        # SMTPSenderRefused, SMTPDataError and friends carry the server's reply.
        return from_code(error.smtp_code, error.smtp_error)
    if isinstance(error, smtplib.SMTPServerDisconnected):
        return Outcome(Verdict.RECONNECT, None, str(error) or "server disconnected")
    if isinstance(error, (ConnectionError, socket.timeout, ssl.SSLError)):
        # Mid-message: the link broke. Reconnecting decides whether the server
        # is really gone (then ``connect_failure`` stops the run).
        return Outcome(Verdict.RECONNECT, None, f"{type(error).__name__}: {error}")
    if isinstance(error, ValueError):
        # Django raises ValueError for addresses it cannot encode.
        return Outcome(Verdict.FAILED, None, f"cannot send: {error}")
    return Outcome(Verdict.DEFERRED, None, f"{type(error).__name__}: {error}")


#: Replies to the first MAIL FROM of a connection that refuse the service,
#: not the message: 421 "closing transmission channel", 530 "authentication
#: required" (the relay wants a login we were not configured with).
SERVICE_REFUSED_CODES = frozenset({421, 530})


def refused_service(error: BaseException, *, fresh_connection: bool) -> str | None:
    """If ``error`` means the server is not taking mail at all, return a
    one-line reason (the run then stops like for a server that is down);
    else ``None``.

    That is a 421 in reply to MAIL FROM on a connection that has not accepted
    a message yet: before the server has seen a recipient or a byte of
    content, a 421 ("service not available, closing transmission channel",
    RFC 5321) cannot be about the message. Reconnecting and retrying message
    after message would only burn every message's attempts (a whole queue
    failed after a relay's bad hour) and hammer the relay. A 530 there
    ("authentication required") is a configuration mistake that every
    message would fail on for good. A 421 later in the conversation, or
    after earlier messages went through, keeps the usual treatment:
    reconnect, and defer the message if it keeps happening (a message that
    makes the server hang up must not stall the queue).
    """
    if (
        fresh_connection
        and isinstance(error, smtplib.SMTPSenderRefused)
        and error.smtp_code in SERVICE_REFUSED_CODES
    ):
        code = error.smtp_code
        return f"mail server not accepting mail: {code} {_text(error.smtp_error)}"
    return None


def connect_failure(
    error: BaseException, *, where: str = "the mail server", timeout: float = 0
) -> str | None:
    """If ``error`` (raised while opening a connection) means the server
    cannot be reached, return a one-line reason naming it (``where``,
    ``host:port``); else ``None``."""
    if isinstance(
        error,
        (
            OSError,  # refused, unreachable, timed out, DNS, TLS
            smtplib.SMTPConnectError,
            smtplib.SMTPAuthenticationError,
            smtplib.SMTPServerDisconnected,
            smtplib.SMTPHeloError,
            smtplib.SMTPNotSupportedError,
        ),
    ):
        detail = str(error) or type(error).__name__
        if timeout and (isinstance(error, TimeoutError) or "timed out" in detail):
            detail = f"timed out after {timeout:g} s"
        return f"cannot connect to {where}: {detail}"
    return None


def backoff(attempts: int) -> timedelta:
    """Delay before the next try after ``attempts`` failed tries (1, 2, ...):
    the base delay doubled each time, capped."""
    base = settings.RETRY_BACKOFF
    delay = base * (2 ** max(attempts - 1, 0))
    return min(delay, settings.RETRY_BACKOFF_MAX)


def in_doubt(events: int, outcome: Outcome) -> tuple[int, float | None, Outcome]:
    """What becomes of a message after its ``events``-th attempt in doubt:
    ``(status, seconds until due or None, outcome to log)``.

    Retried later, not on the spot: the relay that went silent after the end
    of DATA may still deliver it, and a retry at once on a new connection is
    how one slow reply became 3 copies. The retry goes out with the same
    Message-ID, so receivers that de-duplicate show one. After
    ``MAILER_IN_DOUBT_MAX_RETRIES`` retries the message is held (never
    failed: it may have been delivered) until an operator releases it.
    """
    from mailer.models import MessageStatus

    retries = settings.IN_DOUBT_MAX_RETRIES
    if events <= retries:
        delay = settings.IN_DOUBT_RETRY.total_seconds()
        note = f"{outcome.reply}; retried in {delay:g} s with the same Message-ID"
        return MessageStatus.IN_DOUBT, delay, Outcome(Verdict.IN_DOUBT, None, note)
    note = (
        f"{outcome.reply}; in doubt {events} times, not retried "
        f"(MAILER_IN_DOUBT_MAX_RETRIES = {retries}); "
        "release it with retry_deferred --in-doubt"
    )
    return MessageStatus.IN_DOUBT_HELD, None, Outcome(Verdict.IN_DOUBT, None, note)


def held_after_doubt(outcome: Outcome, attempt: int) -> Outcome:
    """A refusal (5xx, or a 4xx at the attempt cap) of a message that was in
    doubt before: logged and held, never "failed", since the earlier attempt
    may have been delivered."""
    code = f"{outcome.code} " if outcome.code else ""
    return Outcome(
        Verdict.IN_DOUBT,
        outcome.code,
        f"attempt {attempt} refused ({code}{outcome.reply}); not marked failed: "
        "an earlier attempt ended in doubt and may have been delivered",
    )


@dataclass(frozen=True)
class Decision:
    """What one attempt's outcome does to its message."""

    #: ``LogResult`` of the attempt and new ``MessageStatus`` of the message.
    result: int
    status: int
    #: Seconds (from the database's now) until due again; None: leaves the queue.
    due_in: float | None
    #: 1 when this attempt ended in doubt.
    in_doubt_added: int
    #: The outcome to log (its reply may gain a note).
    outcome: Outcome
    #: The ``SendResult`` counter it adds to: sent, deferred, failed, in_doubt.
    counter: str


def decide(outcome: Outcome, *, attempt: int, in_doubt_before: int) -> Decision:
    """The rules, in one place: ``outcome`` of attempt number ``attempt`` of
    a message that ended in doubt ``in_doubt_before`` times before.

    - sent: leaves the queue;
    - in doubt: see :func:`in_doubt`;
    - 4xx (or any deferral) below ``MAILER_MAX_ATTEMPTS``: due after
      :func:`backoff`;
    - a refusal, or the attempt cap, of a message that was in doubt before:
      held, never failed (:func:`held_after_doubt`);
    - otherwise: failed for good.
    """
    from mailer.models import LogResult, MessageStatus

    if outcome.verdict is Verdict.SENT:
        return Decision(LogResult.SENT, MessageStatus.SENT, None, 0, outcome, "sent")
    if outcome.verdict is Verdict.IN_DOUBT:
        status, due_in, noted = in_doubt(in_doubt_before + 1, outcome)
        return Decision(LogResult.IN_DOUBT, status, due_in, 1, noted, "in_doubt")
    if outcome.verdict is Verdict.DEFERRED and attempt < settings.MAX_ATTEMPTS:
        return Decision(
            LogResult.DEFERRED,
            MessageStatus.DEFERRED,
            backoff(attempt).total_seconds(),
            0,
            outcome,
            "deferred",
        )
    if in_doubt_before:
        return Decision(
            LogResult.IN_DOUBT,
            MessageStatus.IN_DOUBT_HELD,
            None,
            0,
            held_after_doubt(outcome, attempt),
            "in_doubt",
        )
    if outcome.verdict is Verdict.DEFERRED:
        outcome = Outcome(
            Verdict.FAILED,
            outcome.code,
            f"gave up after {attempt} attempts: {outcome.reply}",
        )
    return Decision(LogResult.FAILED, MessageStatus.FAILED, None, 0, outcome, "failed")
