"""What an SMTP reply (or exception) means for a message, and the retry backoff.

Every sending error is judged here and nowhere else:

- 2xx: sent (some recipients of a multi-recipient message may have been
  refused; the message is sent once to the others, and the refused ones are
  retried alone (4xx) or failed (5xx): see ``mailer.sending.partial``).
- 4xx: deferred, due again after an exponential backoff, for
  ``MAILER_MAX_RETRY_SECONDS`` after it was queued (``MAILER_MAX_ATTEMPTS``
  or ``MAILER_EMAIL_MAX_RETRIES`` cap the count when set, a job's
  ``expires_at`` ends it earlier); then it fails for good (see
  :func:`next_try`). A message that was ever in doubt is held instead.
- The relay's own temporary trouble (4.3.x, a full disk): stop, and every
  worker pauses (see :func:`relay_trouble`).
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
from datetime import datetime, timedelta

from mailer.conf import conf
from mailer.sending.transport import ExchangeTimeout, InDoubt

__all__ = [
    "Decision",
    "Outcome",
    "Retry",
    "Verdict",
    "backoff",
    "classify",
    "connect_failure",
    "decide",
    "enhanced_code",
    "next_try",
    "refused_service",
    "relay_trouble",
    "sent",
]


class Verdict(enum.Enum):
    """What the engine does with a message after one attempt (the module
    docstring gives the rules): sent, deferred (retry later), failed (for
    good), reconnect (same message, new connection, no attempt burned), stop
    (end the run, give claims back) or in doubt (maybe delivered)."""

    SENT = "sent"
    DEFERRED = "deferred"
    FAILED = "failed"
    RECONNECT = "reconnect"
    STOP = "stop"
    IN_DOUBT = "in doubt"


@dataclass(frozen=True)
class Outcome:
    """One attempt judged: the :class:`Verdict`, the SMTP reply code (RFC
    5321 4.2; ``None`` when there was no reply), the reply text or error,
    and whether the reply says the mailbox does not exist (5.1.1, RFC 3463),
    which may put the address on the don't-send list."""

    verdict: Verdict
    code: int | None = None
    reply: str = ""
    no_such_user: bool = False
    #: Recipients refused at RCPT while the message went to the others
    #: (smtplib's ``sendmail()`` return value), for ``mailer.sending.partial``.
    refused: dict[str, tuple[int, bytes]] | None = None


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
    return Outcome(Verdict.SENT, 250, notes, refused=dict(refused))


def classify(error: BaseException) -> Outcome:
    """Judge an exception raised while sending one message; never raises.

    smtplib's reply exceptions by their code (RFC 5321 4.2.1: 2xx, 4xx, 5xx;
    the enhanced code of RFC 3463 where given); every recipient refused: the
    mildest reply decides; a dropped link: reconnect; no reply after the
    final ".": in doubt; ``ValueError`` (Django cannot encode an address):
    failed; anything else a non-SMTP backend raises: deferred.
    """
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
    base, cap = conf.MAILER_RETRY_BACKOFF_SECONDS, conf.MAILER_RETRY_BACKOFF_MAX_SECONDS
    # The exponent is capped before multiplying: a message retried for days
    # reaches attempt 70 and more, and timedelta * 2**69 overflows.
    seconds = base * 2.0 ** min(max(attempts - 1, 0), 60)
    return timedelta(seconds=min(seconds, cap))


# -- the relay's own trouble ---------------------------------------------------

_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")


def enhanced_code(reply: bytes | str) -> tuple[int, int, int] | None:
    """The RFC 3463 enhanced status code at the start of a reply's text
    (``"4.3.1 Insufficient system storage"`` -> ``(4, 3, 1)``), or None."""
    match = _ENHANCED.match(_text(reply))
    return tuple(int(part) for part in match.groups()) if match else None  # type: ignore[return-value]


#: RFC 3463 "mail system status" details that speak of the relay itself at
#: any stage: 4.3.1 mail system full (Postfix's "452 4.3.1 Insufficient
#: system storage" while its disk is full), 4.3.2 system not accepting
#: network messages, 4.3.5 system incorrectly configured. X.3.0 ("other")
#: is too vague at RCPT, where greylisting relays use it for one recipient.
RELAY_DETAILS = frozenset({1, 2, 5})


def relay_trouble(error: BaseException) -> str | None:
    """If ``error`` (raised while sending one message) is temporary trouble
    of the relay itself rather than of this message or recipient, return a
    one-line reason; else ``None``.

    The engine then stops, gives every claim back without burning an
    attempt, and pauses every worker (``mailer.sending.relaypause``):
    retrying message after message against a full disk burns each one's
    attempts (a Postfix answering 452 4.3.1 for 15 minutes would fail a
    whole queue for good). The rules, by where the reply came (RFC 5321 4.2,
    RFC 3463):

    - ``MAIL FROM`` answered 4xx: before a recipient is named, a temporary
      refusal is about the relay (full disk, overload, rate limiting), except
      a 4.1.x, which is about the sender address.
    - ``RCPT TO`` refused for every recipient with 4.3.1/4.3.2/4.3.5: the
      relay says so itself. Other 4xx there (451 4.3.0 greylisting, 452 4.5.3
      too many recipients, 450 mailbox busy) stay per message.
    - ``DATA`` (the command or the final ".") answered 4xx with 4.3.x, or
      452 with no enhanced code ("insufficient system storage"): the relay.

    421 and lost connections are judged by :func:`refused_service` and
    :func:`connect_failure` (the connection, not the message).
    """
    if isinstance(error, smtplib.SMTPSenderRefused):
        code, reply = error.smtp_code, error.smtp_error
        enhanced = enhanced_code(reply)
        if 400 <= code < 500 and code != 421 and (enhanced is None or enhanced[1] != 1):
            return f"relay trouble at MAIL FROM: {code} {_text(reply)}"
        return None
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        replies = list(error.recipients.values())
        if replies and all(_is_relay_reply(code, reply) for code, reply in replies):
            code, reply = replies[0]
            return f"relay trouble at RCPT TO: {code} {_text(reply)}"
        return None
    if isinstance(error, smtplib.SMTPDataError):
        code, reply = error.smtp_code, error.smtp_error
        enhanced = enhanced_code(reply)
        if 400 <= code < 500 and (
            (enhanced is not None and enhanced[1] == 3)
            or (enhanced is None and code == 452)
        ):
            return f"relay trouble at DATA: {code} {_text(reply)}"
    return None


def _is_relay_reply(code: int, reply: bytes | str) -> bool:
    enhanced = enhanced_code(reply)
    return (
        400 <= code < 500
        and enhanced is not None
        and enhanced[1] == 3
        and enhanced[2] in RELAY_DETAILS
    )


# -- how long a message is retried ---------------------------------------------


@dataclass(frozen=True)
class Retry:
    """What becomes of a message after a temporary failure: due again at
    ``due_at``, or given up with ``reason`` (then ``due_at`` is None)."""

    due_at: datetime | None
    reason: str = ""


def next_try(
    attempt: int,
    *,
    queued_at: datetime | None,
    now: datetime,
    expires_at: datetime | None = None,
) -> Retry:
    """After the ``attempt``-th try (1, 2, ...) failed temporarily at ``now``:
    when to try again, or why not.

    Like a real MTA (Postfix keeps mail 5 days), the deciding limit is time,
    not a count: a message queued at ``queued_at`` is retried, with the
    backoff doubling to ``MAILER_RETRY_BACKOFF_MAX_SECONDS``, until
    ``MAILER_MAX_RETRY_SECONDS`` after it was queued. ``MAILER_MAX_ATTEMPTS``
    (off by default) can still cap the count. A job's ``expires_at`` (news
    goes stale) ends retries earlier: a next try at or after it is not
    made, and the message fails as "expired".
    """
    due_at = now + backoff(attempt)
    limit = conf.MAILER_MAX_ATTEMPTS
    if limit is not None and attempt >= limit:
        return Retry(None, f"gave up after {attempt} attempts")
    if expires_at is not None and due_at >= expires_at:
        return Retry(None, f"expired at {expires_at:%Y-%m-%d %H:%M} UTC")
    if queued_at is not None and due_at - queued_at > timedelta(
        seconds=conf.MAILER_MAX_RETRY_SECONDS
    ):
        hours = (now - queued_at).total_seconds() / 3600
        return Retry(None, f"gave up after {attempt} attempts over {hours:.1f} hours")
    return Retry(due_at)


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

    retries = conf.MAILER_IN_DOUBT_MAX_RETRIES
    if events <= retries:
        delay = conf.MAILER_IN_DOUBT_RETRY_SECONDS
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


def decide(
    outcome: Outcome,
    *,
    attempt: int,
    in_doubt_before: int,
    now: datetime | None = None,
    queued_at: datetime | None = None,
    expires_at: datetime | None = None,
) -> Decision:
    """The rules, in one place: ``outcome`` of attempt number ``attempt`` of
    a message that ended in doubt ``in_doubt_before`` times before.

    - sent: leaves the queue;
    - in doubt: see :func:`in_doubt`;
    - 4xx (or any deferral): due after :func:`backoff` while :func:`next_try`
      allows (``MAILER_MAX_RETRY_SECONDS`` after ``queued_at``, the job's
      ``expires_at``, ``MAILER_MAX_ATTEMPTS`` when set); ``now`` is the
      database's now (``mailer.dbclock.database_now``) those are compared
      with;
    - a refusal, or the end of retries, of a message that was in doubt before:
      held, never failed (:func:`held_after_doubt`);
    - otherwise: failed for good.
    """
    from mailer.models import LogResult, MessageStatus

    if outcome.verdict is Verdict.SENT:
        return Decision(LogResult.SENT, MessageStatus.SENT, None, 0, outcome, "sent")
    if outcome.verdict is Verdict.IN_DOUBT:
        status, due_in, noted = in_doubt(in_doubt_before + 1, outcome)
        return Decision(LogResult.IN_DOUBT, status, due_in, 1, noted, "in_doubt")
    give_up = f"gave up after {attempt} attempts"
    if outcome.verdict is Verdict.DEFERRED:
        if now is None:
            from mailer.dbclock import database_now

            now = database_now()
        retry = next_try(attempt, queued_at=queued_at, now=now, expires_at=expires_at)
        if retry.due_at is not None:
            return Decision(
                LogResult.DEFERRED,
                MessageStatus.DEFERRED,
                (retry.due_at - now).total_seconds(),
                0,
                outcome,
                "deferred",
            )
        give_up = retry.reason
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
            f"{give_up}: {outcome.reply}",
        )
    return Decision(LogResult.FAILED, MessageStatus.FAILED, None, 0, outcome, "failed")
