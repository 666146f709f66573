"""The send loop: plain Python, called by ``manage.py send_mail`` (and tests,
benchmarks, or your own worker). No Django admin or command code in here.

One run claims small batches in priority order, sends each message over one
reused connection, and records each outcome the moment the server answers, so
a ``kill -9`` can re-send at most the one message in flight and loses none.
Batches are small on purpose: a password reset queued while a newsletter
drains is claimed by the very next batch.

Where the rest lives: one message's SMTP exchange in
``mailer.sending.transport`` (through ``mailer.sending.smtp``), what a reply
means in ``mailer.sending.outcomes``, claims and leases in
``mailer.sending.claim``, the outcome's database write in
``mailer.sending.records``, and every time that another worker compares in
the database's clock (``mailer.dbclock``).

Time is bounded: each message's exchange has a budget of one SMTP timeout
(``MAILER_SMTP_TIMEOUT`` when ``EMAIL_TIMEOUT`` is unset), so a run ends
within ``--max-seconds`` (or after SIGTERM) plus one budget, whatever the
relay does. A message is only started while its claim's lease outlasts that
budget; the lease is renewed before it runs short.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta

from django.core.exceptions import ImproperlyConfigured
from django.db import (
    DatabaseError,
    InterfaceError,
    OperationalError,
    connections,
    transaction,
)
from django.db.models import Q
from django.utils import timezone

from mailer.addresses import normalize
from mailer.conf import conf
from mailer.dbclock import DbNow, database_now
from mailer.legacy.api import apply_error_handler, send_all, send_loop
from mailer.models import (
    LogResult,
    Message,
    MessageJob,
    MessageLog,
    MessageStatus,
    SuppressionReason,
)
from mailer.sending import outcomes, partial, quotas, relaypause
from mailer.sending.build import MessageBuilder
from mailer.sending.claim import claim_batch, release, renew
from mailer.sending.dkim import DkimKeyError
from mailer.sending.outcomes import Outcome, Verdict
from mailer.sending.records import OutcomeWriter
from mailer.sending.smtp import SendingConnection
from mailer.sending.writebehind import RecordFailed, SettledLate, WriteBehind
from mailer.suppression import suppress, without_blocked
from mailer.waiting import wait_until

logger = logging.getLogger("mailer.engine")

#: The send loop's public names; ``send_all`` and ``send_loop`` are
#: django-mailer's, for code (Celery, RQ tasks) that calls them.
__all__ = [
    "Limits",
    "SendResult",
    "Sender",
    "purge_log",
    "release_in_doubt",
    "retry_deferred",
    "send_all",
    "send_loop",
    "send_queued",
]

#: Reconnects tried for one message before it is deferred instead.
MAX_RECONNECTS_PER_MESSAGE = 2

#: Seconds of lease a message must have left beyond its time budget to be
#: started (else the claim is renewed first). The lease is measured from
#: before the claim was sent, so the database's lease ends no sooner.
LEASE_MARGIN = 0.25

#: Pauses between tries to record an outcome after the database connection
#: broke: about 16 s in all, enough for a PostgreSQL restart or failover.
RECORD_RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 4.0, 8.0)


@dataclass
class SendResult:
    """What one run did; ``summary()`` is the line cron sees.

    Counts are messages (``sent``, ``deferred``, ``failed``, ``suppressed``:
    skipped for the don't-send list, ``in_doubt``, ``released``: claims given
    back unstarted, ``paced``), ``batches`` claimed and SMTP ``connections``
    opened. ``seconds`` is the run's wall-clock time and ``cpu_seconds`` this
    process's CPU time, both float seconds; :attr:`rate` is messages sent per
    second. ``stop_reason`` names why the run ended (``"queue empty"``,
    ``"time limit"``, ``"mail server unreachable"``, ...); ``error`` is set
    (one line) when it ended on an error, which :attr:`ok` tells.
    """

    sent: int = 0
    deferred: int = 0
    failed: int = 0
    suppressed: int = 0
    #: Messages whose relay went silent after the end of DATA (maybe
    #: delivered; retried later with the same Message-ID, or held).
    in_doubt: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    batches: int = 0
    connections: int = 0
    stop_reason: str = "queue empty"
    error: str | None = None
    released: int = 0
    #: Messages given back, due later, because their recipient domain's
    #: window was full (``MAILER_DOMAIN_RATE``); no attempt burned.
    paced: int = 0
    #: When the run stopped for a full rate window or a relay pause: seconds
    #: until sending may resume (``send_mail --loop`` sleeps that long).
    wait_seconds: float | None = None

    @property
    def attempted(self) -> int:
        """Messages handed to the relay (sent, deferred, failed, in doubt)."""
        return self.sent + self.deferred + self.failed + self.in_doubt

    @property
    def rate(self) -> float:
        """Messages sent per second of the run (0.0 for an empty run)."""
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        """True unless the run ended on an error (``error`` is set)."""
        return self.error is None

    def summary(self) -> str:
        """One line for ``self.stdout`` and cron's mail: counts, seconds,
        messages per second and the stop reason (and the error, if any)."""
        line = (
            f"sent {self.sent}, deferred {self.deferred}, failed {self.failed}, "
            f"suppressed {self.suppressed}"
            + (f", in doubt {self.in_doubt}" if self.in_doubt else "")
            + f" in {self.seconds:.2f}s "
            f"({self.rate:.1f}/s); stopped: {self.stop_reason}"
        )
        if self.paced:
            line += f"; paced {self.paced} (domain rate)"
        if self.error:
            line += f"; error: {self.error}"
        return line


@dataclass
class Limits:
    """What ends or slows one run; ``None`` means no limit.

    ``max_messages``: messages handled (attempted or suppressed);
    ``max_seconds``: float seconds of wall-clock time (a message on the wire
    is finished first, within one SMTP timeout); ``throttle``: messages per
    second at most (``MAILER_RATE``), shared by all connections of the run;
    ``batch_size``: messages claimed at a time (``MAILER_BATCH_SIZE``).
    """

    max_messages: int | None = None
    max_seconds: float | None = None
    throttle: float | None = None
    batch_size: int | None = None
    #: django-mailer's MAILER_EMAIL_THROTTLE: seconds of pause between messages.
    pause: float | None = None
    #: django-mailer's MAILER_EMAIL_MAX_DEFERRED: deferrals that end the run.
    max_deferred: int | None = None

    @classmethod
    def from_settings(cls, **overrides) -> Limits:
        """The limits of the ``MAILER_*`` settings (``mailer.conf``), with
        each override that is not ``None`` in place of its setting."""
        limits = cls(
            max_messages=conf.MAILER_EMAIL_MAX_BATCH,
            max_seconds=conf.MAILER_EMAIL_MAX_SECONDS,
            throttle=conf.MAILER_RATE,
            batch_size=conf.MAILER_BATCH_SIZE,
            pause=conf.MAILER_EMAIL_THROTTLE,
            max_deferred=conf.MAILER_EMAIL_MAX_DEFERRED,
        )
        for name, value in overrides.items():
            if value is not None:
                setattr(limits, name, value)
        return limits


class _Stop(Exception):
    """Leave the run: ``reason`` says why, claims are released by the caller."""

    def __init__(
        self, reason: str, error: str | None = None, wait: float | None = None
    ) -> None:
        self.reason = reason
        self.error = error
        self.wait = wait


class Sender:
    """One run of the send loop. Use :func:`send_queued` unless you need the
    object (``send_mail --loop`` keeps one per iteration).

    ``limits`` default to :meth:`Limits.from_settings`; ``should_stop`` is
    asked between messages (SIGTERM, a caller's deadline); ``on_progress`` is
    called with the :class:`SendResult` so far after each batch. One Sender
    holds one SMTP connection and is used by one thread; :meth:`run` runs it
    once.
    """

    #: Whether this Sender may commit outcomes on a second database
    #: connection while the next message's envelope goes out
    #: (``mailer.sending.writebehind``; used where ``WriteBehind.usable``
    #: says it is correct). The connection pool's Senders do not: N
    #: connections already wait side by side.
    write_behind = True

    def __init__(
        self,
        limits: Limits | None = None,
        *,
        should_stop: Callable[[], bool] = lambda: False,
        on_progress: Callable[[SendResult], None] | None = None,
    ) -> None:
        self.limits = limits or Limits.from_settings()
        self.should_stop = should_stop
        self.on_progress = on_progress
        self.connection = SendingConnection()
        self.builder = MessageBuilder()
        self.writer = OutcomeWriter()
        self.result = SendResult()
        self._first_send_at: float | None = None
        #: time.monotonic() by which the current batch's lease surely ends
        #: (measured from before the claim or renewal was sent).
        self._lease_until = 0.0
        #: The exception behind the last delivery's outcome (for
        #: MAILER_ERROR_HANDLER), None when the server accepted the message.
        self._last_error: Exception | None = None
        #: Provider limits (mailer.sending.quotas); one per Sender, so one
        #: per pool thread.
        self.gate = quotas.Gate(writing=self._writing)
        #: True once this run had a message accepted (the relay pause is
        #: cleared then, once).
        self._relay_ok = False
        self._expiry: dict[int, object] = {}
        #: Set by run() where outcomes are committed behind the sending.
        self._behind: WriteBehind | None = None
        #: time.monotonic() by which the message being sent must be answered.
        self._message_deadline = 0.0

    # -- the loop -------------------------------------------------------------

    def run(self) -> SendResult:
        """Claim, send and record batches until the queue is empty or a
        limit, a stop request or an error ends the run; return what it did.
        SMTP and database errors end up in the result (``stop_reason``,
        ``error``), not raised."""
        started, cpu_started = time.monotonic(), time.process_time()
        limits = self.limits
        deadline = started + limits.max_seconds if limits.max_seconds else None
        batch_size = max(1, limits.batch_size or conf.MAILER_BATCH_SIZE)
        result = self.result
        try:
            if (
                self.write_behind
                and conf.MAILER_WRITE_BEHIND
                and self.writer.combined_sql
                and WriteBehind.usable(self.writer.db)
            ):
                self._behind = WriteBehind(self.writer.db, self.writer.combined_sql)
            while True:
                self._check_limits(deadline)
                size = batch_size
                if limits.max_messages is not None:
                    size = min(size, limits.max_messages - self._counted())
                claimed_at = time.monotonic()
                token, ids = self._claim(size)
                if not ids:
                    result.stop_reason = "queue empty"
                    break
                # Every worker honours a pause another one recorded after the
                # relay's own trouble (mailer.sending.relaypause). Checked once
                # mail is claimed, so an empty queue still costs one query.
                paused = relaypause.current()
                if paused is not None:
                    with self._writing():
                        result.released += release(token, ids)
                    raise _Stop("relay paused", str(paused), paused.seconds)
                result.batches += 1
                self._send_batch(token, ids, deadline, started, claimed_at)
                # The batch's last outcome, before the progress report and
                # the next claim.
                self._settle()
                if self.on_progress:
                    self.on_progress(result)
        except _Stop as stop:
            result.stop_reason = stop.reason
            result.error = stop.error
            result.wait_seconds = stop.wait
        except DatabaseError as error:
            # The database went away (restart, failover, network) where no
            # retry helps: the run stops with one line for cron, as for a mail
            # server that is down, rather than a traceback. Its claims cannot
            # be given back without a database; their leases run out by
            # themselves. The connection is closed so that a ``--loop`` worker
            # reconnects on its next run.
            result.stop_reason = "database error"
            result.error = f"database error: {_first_line(error)}"
            _close_quietly(self.writer.db)
        finally:
            try:
                self._end_write_behind()
            finally:
                self.connection.close()
            result.connections = self.connection.opened
            result.seconds = time.monotonic() - started
            result.cpu_seconds = time.process_time() - cpu_started
        return result

    def _end_write_behind(self) -> None:
        """Commit the last outcome and close the second database connection;
        an error then (the rewrite on this thread's connection failed too)
        is the run's error, unless it already had one."""
        if self._behind is None:
            return
        try:
            self._settle()
        except Exception as error:  # noqa: BLE001 - reported in the result
            logger.error("the last outcome could not be recorded: %s", error)
            if self.result.error is None:
                self.result.stop_reason = "database error"
                self.result.error = f"database error: {_first_line(error)}"
        finally:
            self._behind.reset()
            self._behind = None

    def _commit_in_line(self, reason: str) -> None:
        """Stop committing behind for the rest of the run (nothing may be
        pending): the second connection failed or a commit was slow, and
        every further message would pay for it again."""
        behind, self._behind = self._behind, None
        if behind is None:
            return
        logger.warning(
            "%s; outcomes are committed in line for the rest of the run", reason
        )
        behind.reset()

    def _claim(self, size: int) -> tuple[str, list[int]]:
        """Claim the next batch (a hook: the connection pool shares one
        ``max_messages`` budget among its connections here)."""
        return claim_batch(size)

    def _counted(self) -> int:
        r = self.result
        return r.attempted + r.suppressed

    def _check_limits(self, deadline: float | None) -> None:
        if self.should_stop():
            raise _Stop("stop requested")
        if deadline is not None and time.monotonic() >= deadline:
            raise _Stop("time limit")
        if (
            self.limits.max_messages is not None
            and self._counted() >= self.limits.max_messages
        ):
            raise _Stop("message limit")
        if (
            self.limits.max_deferred is not None
            and self.result.deferred >= self.limits.max_deferred
        ):
            raise _Stop("deferred limit")

    def _send_batch(
        self,
        token: str,
        ids: list[int],
        deadline: float | None,
        started: float,
        claimed_at: float,
    ) -> None:
        # created_at is read: the retry window runs from it (outcomes.next_try).
        by_id = {
            m.id: m for m in Message.all_objects.filter(id__in=ids, claim_token=token)
        }
        batch = [by_id[i] for i in ids if i in by_id]
        suppressed = self.builder.suppressed_among(batch)
        lease = conf.MAILER_LEASE_SECONDS
        self._lease_until = claimed_at + lease
        held = set(ids)
        batch_now = None
        for index, message in enumerate(batch):
            try:
                if index:
                    self._check_limits(deadline)
                self._throttle(started, deadline)
            except _Stop:
                self.result.released += release(token, [m.id for m in batch[index:]])
                raise
            if message.id not in held:
                continue  # taken over, cancelled or released meanwhile
            expires_at = self._expires_at(message)
            if expires_at is not None and batch_now is None:
                # Once per batch: a batch is seconds long, an expiry hours.
                batch_now = self._db_now()
            if expires_at is not None and expires_at <= batch_now:
                # News goes stale: past the job's expiry, undelivered mail
                # fails instead of going out late (create_job(expires_at=)).
                outcome = Outcome(
                    Verdict.FAILED,
                    None,
                    f"expired at {expires_at:%Y-%m-%d %H:%M} UTC before delivery",
                )
                self._record(message, token, LogResult.FAILED, outcome)
                continue
            is_job_mail = message.job_id is not None
            if (
                is_job_mail
                and suppressed
                and normalize(message.to_address) in suppressed
            ):
                self._record(message, token, LogResult.SUPPRESSED, None)
                continue
            try:
                envelope_from, recipients, data, message_id = self._build(message)
            except (DkimKeyError, ImproperlyConfigured) as error:
                # Signing is configured but the key is gone or bad, or its
                # libraries (the [dkim] extra) are not installed: every
                # message would fail alike, so the run stops and gives its
                # claims back, mail kept, no attempt used.
                self.result.released += release(token, [m.id for m in batch[index:]])
                if isinstance(error, DkimKeyError):
                    raise _Stop("DKIM key", f"DKIM: {error}") from error
                raise _Stop("improperly configured", str(error)) from error
            except Exception as error:  # noqa: BLE001 - any build error fails one message
                outcome = Outcome(
                    Verdict.FAILED, None, f"cannot build message: {error}"
                )
                self._record(message, token, LogResult.FAILED, outcome)
                continue
            skipped: list[str] = []
            if not is_job_mail and suppressed:
                recipients, skipped = without_blocked(recipients, suppressed)
                if not recipients:
                    self._record(message, token, LogResult.SUPPRESSED, None)
                    continue
            wait = self.gate.before_send(
                recipients, deadline=deadline, should_stop=self.should_stop
            )
            if wait is not None:
                # A full rate window defers; it never fails mail nor burns an
                # attempt (see mailer.sending.quotas).
                if wait.is_global:
                    rest = [m.id for m in batch[index:]]
                    with self._writing():
                        deferred = quotas.defer_claimed(token, rest, wait.until)
                    self.result.released += deferred
                    raise _Stop(
                        f"rate limit ({wait.scope}) until {wait.until:%H:%M:%S}",
                        wait=wait.seconds,
                    )
                with self._writing():
                    paced = quotas.defer_claimed(token, [message.id], wait.until)
                self.result.paced += paced
                continue
            # Never start a message whose lease could end while it is on the
            # wire: another worker would then take it and send it too (a
            # relay slower than the lease does exactly that). Renewing covers
            # the whole rest of the batch in one UPDATE.
            budget = self.connection.budget(len(data))
            outcome = None
            # Twice at most: when the previous outcome's commit was slow
            # (SettledLate), nothing of this message was sent; its lease is
            # checked again and it goes out afresh, committed in line from
            # then on (so it cannot be late twice).
            for _try in range(2):
                if self._lease_until - time.monotonic() <= budget + LEASE_MARGIN:
                    renewing_at = time.monotonic()
                    held = renew(token, [m.id for m in batch[index:]])
                    self._lease_until = renewing_at + lease
                    if message.id not in held:
                        break
                message_deadline = time.monotonic() + budget
                self._message_deadline = message_deadline
                try:
                    outcome = self._deliver(
                        envelope_from, recipients, data, message_deadline
                    )
                except SettledLate as late:
                    self._commit_in_line(str(late))
                    continue
                break
            if outcome is None:
                continue  # taken over meanwhile
            if outcome.verdict is Verdict.STOP:
                self.result.released += release(token, [m.id for m in batch[index:]])
                # Every worker pauses, the pause doubling with each bout in a
                # row (mailer.sending.relaypause).
                with self._writing():
                    paused = relaypause.pause(outcome.reply)
                error = (
                    f"{outcome.reply}; {paused.short()}" if paused else outcome.reply
                )
                wait = paused.seconds if paused else None
                if outcome.reply.startswith("relay trouble"):
                    raise _Stop("relay trouble", error, wait)
                raise _Stop("mail server unreachable", error, wait)
            if outcome.verdict is Verdict.SENT and not self._relay_ok:
                self._relay_ok = True
                with self._writing():
                    relaypause.clear()
            if self._last_error is not None and conf.MAILER_ERROR_HANDLER:
                outcome = apply_error_handler(
                    self.connection, message, self._last_error, outcome
                )
            if skipped:
                note = f"not sent to {', '.join(skipped)} (don't-send list)"
                reply = f"{outcome.reply}; {note}" if outcome.reply else note
                outcome = replace(outcome, reply=reply)
            if outcome.refused and message.job_id is None:
                # Some recipients refused, the others served: the refused ones
                # are retried alone or failed, in the transaction that records
                # the email as sent, so a crash cannot lose them.
                # The previous outcome first, outside this transaction (a
                # rewrite after a broken connection needs its retries).
                self._settle()
                with self._writing(), transaction.atomic(using=self.writer.db):
                    self._record(message, token, None, outcome, message_id=message_id)
                    partial.record_refusals(
                        message,
                        outcome.refused,
                        data=data,
                        now=self._db_now(),
                        attempt=message.attempts + 1,
                    )
                continue
            self._record(message, token, None, outcome, message_id=message_id)

    def _throttle(self, started: float, deadline: float | None) -> None:
        if self.limits.pause and self._counted():
            # django-mailer's throttle: a fixed pause after each message.
            _pause(self.limits.pause, deadline)
        if not self.limits.throttle:
            return
        # Slots are counted from the first message, not from the run's start
        # (which includes the first claim), so the spacing is exact.
        if self._first_send_at is None:
            self._first_send_at = time.monotonic()
        next_slot = self._first_send_at + self.result.attempted / self.limits.throttle
        pause = next_slot - time.monotonic()
        if deadline is not None:
            pause = min(pause, deadline - time.monotonic())
        if pause > 0:
            time.sleep(pause)

    def _writing(self) -> contextlib.AbstractContextManager:
        """Context around a write outside ``_write`` (a hook: the pool takes
        its turn to write on SQLite here)."""
        return contextlib.nullcontext()

    def _expires_at(self, message: Message):
        """The job's expiry (None for single mail or a job without one),
        one query per job per run."""
        if message.job_id is None:
            return None
        if message.job_id not in self._expiry:
            self._expiry[message.job_id] = (
                MessageJob.objects.filter(pk=message.job_id)
                .values_list("expires_at", flat=True)
                .first()
            )
        return self._expiry[message.job_id]

    def _db_now(self):
        """The database's now as a ``datetime`` (``mailer.dbclock``), for
        the job expiry and retry window compared in Python."""
        return database_now(self.writer.db)

    # -- one message ------------------------------------------------------------

    def _build(self, message: Message) -> tuple[str, list[str], bytes, str]:
        """(envelope from, recipients, bytes, Message-ID) of ``message``."""
        return self.builder.build(message)

    def _deliver(
        self,
        envelope_from: str,
        recipients: list[str],
        data: bytes,
        deadline: float,
    ) -> Outcome:
        """Hand one message to the relay within ``deadline``
        (``time.monotonic()``), reconnecting if the connection broke before
        the end of DATA. Never retries after it (in doubt)."""
        last: Outcome | None = None
        self._last_error = None
        for _ in range(MAX_RECONNECTS_PER_MESSAGE + 1):
            if not self.connection.is_open:
                try:
                    self.connection.open(deadline)
                except Exception as error:  # noqa: BLE001 - judged below
                    self.connection.close()
                    reason = outcomes.connect_failure(
                        error,
                        where=self.connection.where,
                        timeout=self.connection.timeout,
                    )
                    if reason is None:
                        raise
                    return Outcome(Verdict.STOP, None, reason)
            try:
                refused = self.connection.send(
                    envelope_from,
                    recipients,
                    data,
                    deadline=deadline,
                    before_content=self._behind and self._before_content,
                )
            except RecordFailed as failed:
                # The previous message's outcome, not this message: the
                # database error ends the run like any other (run()).
                self.connection.close()
                raise failed.__cause__ from None
            except SettledLate:
                # Nothing of this message was sent; the relay drops the
                # open transaction with the connection.
                self.connection.close()
                raise
            except Exception as error:  # noqa: BLE001 - every error is classified
                # A 421 to the first MAIL FROM of a connection: the server is
                # not taking mail; stop as for a server that is down, since
                # trying message after message against a relay that answers
                # only 421 burns every message's attempts.
                unavailable = outcomes.refused_service(
                    error, fresh_connection=self.connection.accepted == 0
                )
                if unavailable is not None:
                    return Outcome(Verdict.STOP, error.smtp_code, unavailable)
                # The relay's own trouble (full disk, 4.3.x): stop and pause
                # every worker instead of burning each message's attempts.
                # Never for a failure after the final "." (in doubt): the
                # relay_trouble rules judge replies, not lost replies.
                trouble = outcomes.relay_trouble(error)
                if trouble is not None:
                    return Outcome(
                        Verdict.STOP, getattr(error, "smtp_code", None), trouble
                    )
                last = outcomes.classify(error)
                self._last_error = error
                if last.verdict is Verdict.RECONNECT:
                    logger.info("reconnecting after: %s", last.reply)
                    self.connection.close()
                    if not self.connection.is_smtp:
                        self.connection.backend = None
                    continue
                if last.verdict in (Verdict.IN_DOUBT, Verdict.STOP):
                    # The link is gone or useless; the next message opens a
                    # new one (the in-doubt message itself is not resent).
                    self.connection.close()
                return last
            return outcomes.sent(refused)
        return Outcome(
            Verdict.DEFERRED,
            last.code if last else None,
            f"connection dropped {MAX_RECONNECTS_PER_MESSAGE + 1} times while sending: "
            f"{last.reply if last else ''}",
        )

    def _record(
        self,
        message: Message,
        token: str,
        result: LogResult | None,
        outcome: Outcome | None,
        *,
        message_id: str = "",
    ) -> None:
        """Write the outcome of one attempt, the moment it is known."""
        attempts_added = 0 if result is LogResult.SUPPRESSED else 1
        attempt = message.attempts + attempts_added
        in_doubt_added = 0
        due_in: float | None = None
        if result is LogResult.SUPPRESSED:
            status = MessageStatus.SUPPRESSED
            self.result.suppressed += 1
        else:
            deferred = outcome is not None and outcome.verdict is Verdict.DEFERRED
            # Time decides, not a count (MAILER_MAX_RETRY_SECONDS from
            # created_at, on the database's clock), and a job's expiry ends
            # retries early: see outcomes.next_try.
            decision = outcomes.decide(
                outcome,
                attempt=attempt,
                in_doubt_before=message.in_doubt,
                now=self._db_now() if deferred else None,
                queued_at=message.created_at if deferred else None,
                expires_at=self._expires_at(message) if deferred else None,
            )
            result, status, outcome = decision.result, decision.status, decision.outcome
            due_in, in_doubt_added = decision.due_in, decision.in_doubt_added
            counter = decision.counter
            setattr(self.result, counter, getattr(self.result, counter) + 1)
        self._write(
            message=message,
            token=token,
            status=status,
            attempts_added=attempts_added,
            in_doubt_added=in_doubt_added,
            due_in=due_in,
            message_id=(message_id or "")[:255] or None,
            provider_id=self.connection.provider_id,
            result=result,
            smtp_code=outcome.code if outcome else None,
            reply=outcome.reply if outcome else "",
            attempt=attempt,
        )
        if (
            outcome is not None
            and outcome.no_such_user
            and message.job_id is not None
            and conf.MAILER_SUPPRESS_ON_NO_SUCH_USER
        ):
            suppress(
                message.to_address,
                SuppressionReason.BOUNCED,
                f"{outcome.code} {outcome.reply}",
            )

    def _write(self, **values) -> None:
        """Record an outcome: at once, or sent on the second database
        connection and committed while the next message's envelope goes out
        (see ``mailer.sending.writebehind``; never inside an atomic block,
        whose rows that connection could not see). If the second connection
        fails, the outcome is written at once on this thread's, and so is
        every later one of the run."""
        self._settle()
        behind = self._behind
        if behind is None or connections[self.writer.db].in_atomic_block:
            self._write_now(**values)
            return
        try:
            behind.send(values, sum(self.writer.params(**values), []))
        except Exception as error:  # noqa: BLE001 - written again below
            self._commit_in_line(f"recording an outcome behind failed ({error})")
            self._write_now(**values)

    def _settle(self) -> bool:
        """Wait until the outcome being committed behind (if any) is
        committed; return whether one was pending. If anything went wrong
        (the connection broke, no answer came, the statement failed), the
        outcome is written again at once on this thread's connection, with
        :meth:`_write_now`'s retries (the message's claim guards its row; the
        log may then hold the attempt twice), and the rest of the run
        commits in line.

        :raises django.db.DatabaseError: as :meth:`_write_now`."""
        behind = self._behind
        if behind is None or behind.pending is None:
            return False
        values = behind.pending
        try:
            behind.wait()
        except Exception as error:  # noqa: BLE001 - written again below
            self._commit_in_line(f"recording an outcome behind failed ({error})")
            self._write_now(**values)
        return True

    def _before_content(self) -> None:
        """``transport.exchange``'s hook: the previous outcome is committed
        before this message's content and final "." go out (at most one
        message in doubt per connection after kill -9).

        :raises RecordFailed: it could not be recorded at all.
        :raises SettledLate: an outcome was pending and the wait took longer
            than ``LEASE_MARGIN``, or ended less than ``LEASE_MARGIN`` before
            this message's deadline (a rewrite after a broken connection, a
            stalled database): its lease and deadline were checked before
            that wait, so it is not sent now; the send loop checks its lease
            again and sends it afresh, committing in line from then on.
        """
        started = time.monotonic()
        try:
            waited = self._settle()
        except Exception as error:
            raise RecordFailed(str(error)) from error
        now = time.monotonic()
        if waited and (
            now - started > LEASE_MARGIN or now > self._message_deadline - LEASE_MARGIN
        ):
            raise SettledLate(
                f"the previous outcome took {now - started:.2f} s to commit"
            )

    def _write_now(self, **values) -> None:
        """Record an outcome the moment it is known, reconnecting to the
        database if its connection broke: the server has answered (perhaps
        accepted the email), and an outcome lost here would send the email
        again once the lease runs out (one duplicate per worker for each
        PostgreSQL restart mid-run). So the worker waits for the database,
        about 16 s in all (``RECORD_RETRY_DELAYS``), and goes on.

        :raises django.db.OperationalError: the database is still away after
            the last retry, or the write is inside an atomic block (which a
            reconnect would silently end).
        :raises django.db.InterfaceError: likewise."""
        db = self.writer.db
        for delay in (*RECORD_RETRY_DELAYS, None):
            try:
                self.writer.write(**values)
                return
            except (OperationalError, InterfaceError) as error:
                if delay is None or connections[db].in_atomic_block:
                    raise
                logger.warning(
                    "recording an outcome failed (%s); retrying in %.1fs",
                    _first_line(error),
                    delay,
                )
                # Django reconnects on the next query once this is closed.
                _close_quietly(db)
                time.sleep(delay)


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _close_quietly(db: str) -> None:
    try:
        connections[db].close()
    except DatabaseError:
        pass  # it is broken already; Django forgets it either way


def send_queued(
    *,
    max_messages: int | None = None,
    max_seconds: float | None = None,
    throttle: float | None = None,
    batch_size: int | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    on_progress: Callable[[SendResult], None] | None = None,
    connections: int | None = None,
) -> SendResult:
    """Send due mail until the queue is empty or a limit is reached.

    Limits left as ``None`` come from the ``MAILER_*`` settings; so does
    ``connections`` (``MAILER_CONNECTIONS``): with more than one, the run
    drives that many SMTP connections at once (``mailer.sending.pool``), and
    the limits apply to the whole run.

    :param max_messages: messages to handle at most, attempted or suppressed
        (``MAILER_EMAIL_MAX_BATCH``).
    :param max_seconds: float seconds of wall-clock time
        (``MAILER_EMAIL_MAX_SECONDS``); the message on the wire is finished
        first, within one SMTP timeout.
    :param throttle: messages per second at most (``MAILER_RATE``).
    :param batch_size: messages claimed at a time (``MAILER_BATCH_SIZE``).
    :param should_stop: asked between messages; True ends the run and gives
        the unstarted claims back.
    :param on_progress: called with the :class:`SendResult` so far.
    :param connections: SMTP connections at once, 1 to
        ``mailer.sending.pool.MAX_CONNECTIONS``.
    :returns: a :class:`SendResult`. Errors of the relay and of the database
        end the run and are reported in it (``stop_reason``, ``error``), not
        raised, so a cron job always prints one line.
    :raises ValueError: ``connections`` is out of range.

    The messages go through the sending backend of Django's email framework
    (https://docs.djangoproject.com/en/stable/topics/email/); SMTP replies
    are judged by RFC 5321 and RFC 3463 (``mailer.sending.outcomes``).
    """
    limits = Limits.from_settings(
        max_messages=max_messages,
        max_seconds=max_seconds,
        throttle=throttle,
        batch_size=batch_size,
    )
    if connections is None:
        connections = conf.MAILER_CONNECTIONS
    if connections != 1:
        from mailer.sending.pool import send_over_pool

        return send_over_pool(
            connections, limits, should_stop=should_stop, on_progress=on_progress
        )
    return Sender(limits, should_stop=should_stop, on_progress=on_progress).run()


def retry_deferred(*, now=None, queryset=None, priority=None) -> int:
    """Make every deferred message due now (and give held ones their turn);
    return how many (an ``int``, messages).

    ``queryset`` narrows the messages (``Message.all_objects.filter(...)
    .retry_deferred()``); ``priority`` (a name or django-mailer's 1-3) is
    given to them, as django-mailer's ``retry_deferred(new_priority)`` does.
    With ``MAILER_EMAIL_MAX_RETRIES`` set, a message that has used its
    retries stays deferred (django-mailer's rule). Messages in doubt keep
    their own delay (``MAILER_IN_DOUBT_RETRY_SECONDS``): the relay may still
    deliver them; see :func:`release_in_doubt`. "Now" is the database's clock
    (``mailer.dbclock``) unless ``now`` (a ``datetime``) is given.

    :raises ValueError: ``priority`` is unknown, or is ``"deferred"`` (which
        would hold the messages instead of retrying them).
    """
    now = now or DbNow()
    # A deferred message that a worker holds right now (token set, lease not
    # over) is left alone: making it due would let a second worker take it.
    unclaimed = Q(claim_token__isnull=True) | Q(due_at__lte=now)
    qs = (queryset if queryset is not None else Message.all_objects).deferred()
    if conf.MAILER_EMAIL_MAX_RETRIES is not None:
        qs = qs.filter(attempts__lte=conf.MAILER_EMAIL_MAX_RETRIES)
    values = {"status": MessageStatus.QUEUED, "due_at": now}
    if priority is not None:
        from mailer.queue import parse_priority

        level, held = parse_priority(priority, "medium")
        if held:
            raise ValueError("retry_deferred cannot give the 'deferred' priority")
        values["priority"] = level
    return qs.filter(unclaimed).update(**values)


def _pause(seconds: float, deadline: float | None) -> None:
    wait_until(seconds, deadline=deadline, wait=time.sleep)


def release_in_doubt(ids: list[int] | None = None) -> int:
    """Give messages held "in doubt, not retried" one more try, due now.

    For an operator who checked that the relay did not deliver them (its
    log, the recipient): each release may deliver one more copy. The Message-ID
    stays the same. Returns how many were released.

    :param ids: only these messages (default: every held one).
    """
    held = Message.all_objects.filter(status=MessageStatus.IN_DOUBT_HELD)
    if ids is not None:
        held = held.filter(id__in=ids)
    return held.update(status=MessageStatus.IN_DOUBT, due_at=DbNow(), claim_token=None)


def purge_log(days: float, *, result: int | None = None) -> int:
    """Delete ``MessageLog`` rows older than ``days`` (float days, by this
    host's clock); return how many were deleted.

    :param result: only rows with this result (a ``mailer.models.LogResult``,
        or django-mailer's ``RESULT_*`` code); ``None``: every row.

    The ``purge_mail_log`` command calls django-mailer's
    ``MessageLog.objects.purge_old_entries(days, result_codes)`` instead,
    which defaults to successes only.
    """
    cutoff = timezone.now() - timedelta(days=days)
    qs = MessageLog.objects.filter(created_at__lt=cutoff)
    if result is not None:
        qs = qs.filter(result=result)
    deleted, _ = qs.delete()
    return deleted
