"""The send loop: plain Python, called by ``manage.py send_mail`` (and tests,
benchmarks, or your own worker). No Django admin or command code in here.

One run claims small batches in priority order, sends each message over one
reused connection, and records each outcome the moment the server answers, so
a ``kill -9`` can re-send at most the one message in flight and loses none.
Batches are small on purpose: a password reset queued while a newsletter
drains is claimed by the very next batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta

from django.core.mail.utils import DNS_NAME
from django.db import (
    DatabaseError,
    InterfaceError,
    OperationalError,
    connections,
    transaction,
)
from django.db.models import Q
from django.utils import timezone

from mailer import outcomes
from mailer.addresses import envelope_address, normalize
from mailer.claim import claim_batch, release, renew
from mailer.compose import JobTemplate
from mailer.conf import settings
from mailer.connections import SendingConnection
from mailer.models import (
    DontSendEntry,
    LogResult,
    Message,
    MessageJob,
    MessageLog,
    MessageStatus,
    SuppressionReason,
)
from mailer.outcomes import Outcome, Verdict
from mailer.records import OutcomeWriter
from mailer.sending import partial, quotas, relaypause
from mailer.unsubscribe import UnsubscribeLinks, site_domain

logger = logging.getLogger("mailer.engine")

#: Reconnects tried for one message before it is deferred instead.
MAX_RECONNECTS_PER_MESSAGE = 2

#: Pauses between tries to record an outcome after the database connection
#: broke: about 16 s in all, enough for a PostgreSQL restart or failover.
RECORD_RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 4.0, 8.0)


@dataclass
class SendResult:
    """What one run did; ``summary()`` is the line cron sees."""

    sent: int = 0
    deferred: int = 0
    failed: int = 0
    suppressed: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    batches: int = 0
    connections: int = 0
    stop_reason: str = "queue empty"
    error: str | None = None
    released: int = 0
    messages: list[int] = field(default_factory=list, repr=False)
    #: Messages given back, due later, because their recipient domain's
    #: window was full (``MAILER_DOMAIN_RATE``); no attempt burned.
    paced: int = 0
    #: When the run stopped for a full rate window or a relay pause: seconds
    #: until sending may resume (``send_mail --loop`` sleeps that long).
    wait_seconds: float | None = None

    @property
    def attempted(self) -> int:
        return self.sent + self.deferred + self.failed

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    def summary(self) -> str:
        line = (
            f"sent {self.sent}, deferred {self.deferred}, failed {self.failed}, "
            f"suppressed {self.suppressed} in {self.seconds:.2f}s "
            f"({self.rate:.1f}/s); stopped: {self.stop_reason}"
        )
        if self.paced:
            line += f"; paced {self.paced} (domain rate)"
        if self.error:
            line += f"; error: {self.error}"
        return line


@dataclass
class Limits:
    max_messages: int | None = None
    max_seconds: float | None = None
    throttle: float | None = None
    batch_size: int | None = None

    @classmethod
    def from_settings(cls, **overrides) -> Limits:
        limits = cls(
            max_messages=settings.EMAIL_MAX_BATCH,
            max_seconds=settings.EMAIL_MAX_SECONDS,
            throttle=settings.EMAIL_THROTTLE,
            batch_size=settings.BATCH_SIZE,
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
    object (``send_mail --loop`` keeps one per iteration)."""

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
        self.templates: dict[int, JobTemplate | Exception] = {}
        self.links = UnsubscribeLinks()
        self.writer = OutcomeWriter()
        self.domain = site_domain() or DNS_NAME.get_fqdn()
        self.result = SendResult()
        self._first_send_at: float | None = None
        self.gate = quotas.Gate()
        self._relay_ok = False
        self._expiry: dict[int, object] = {}

    # -- the loop -------------------------------------------------------------

    def run(self) -> SendResult:
        started, cpu_started = time.monotonic(), time.process_time()
        limits = self.limits
        deadline = started + limits.max_seconds if limits.max_seconds else None
        batch_size = max(1, limits.batch_size or settings.BATCH_SIZE)
        result = self.result
        try:
            while True:
                self._check_limits(deadline)
                size = batch_size
                if limits.max_messages is not None:
                    size = min(size, limits.max_messages - self._counted())
                claimed_at = time.monotonic()
                token, ids = claim_batch(size)
                if not ids:
                    result.stop_reason = "queue empty"
                    break
                # Every worker honours a pause another one recorded after the
                # relay's own trouble (mailer.sending.relaypause). Checked once
                # mail is claimed, so an empty queue still costs one query.
                paused = relaypause.current()
                if paused is not None:
                    result.released += release(token, ids)
                    raise _Stop("relay paused", str(paused), paused.seconds)
                result.batches += 1
                self._send_batch(token, ids, deadline, started, claimed_at)
                if self.on_progress:
                    self.on_progress(result)
        except _Stop as stop:
            result.stop_reason = stop.reason
            result.error = stop.error
            result.wait_seconds = stop.wait
        except DatabaseError as error:
            # The database went away (restart, failover, network) where no
            # retry helps. Found by test_crashes (PostgreSQL restarted
            # mid-run): the command died with a 40-line traceback. Now the run
            # stops with one line for cron, like for a mail server that is
            # down. Its claims cannot be given back without a database; their
            # leases run out by themselves. The connection is closed so that
            # a ``--loop`` worker reconnects on its next run.
            result.stop_reason = "database error"
            result.error = f"database error: {_first_line(error)}"
            _close_quietly(self.writer.db)
        finally:
            self.connection.close()
            result.connections = self.connection.opened
            result.seconds = time.monotonic() - started
            result.cpu_seconds = time.process_time() - cpu_started
        return result

    def _counted(self) -> int:
        r = self.result
        return r.sent + r.deferred + r.failed + r.suppressed

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

    def _send_batch(
        self,
        token: str,
        ids: list[int],
        deadline: float | None,
        started: float,
        claimed_at: float,
    ) -> None:
        by_id = {m.id: m for m in Message.objects.filter(id__in=ids, claim_token=token)}
        batch = [by_id[i] for i in ids if i in by_id]
        suppressed = self._suppressed_among(batch)
        # Renew the lease once half of it is gone, so no message of this batch
        # is ever due again (and claimed by another worker) while we may still
        # send it. Found by test_workers: a batch outliving its lease on a
        # slow server was sent twice, by this run and the next cron run.
        lease = settings.LEASE.total_seconds()
        renew_at = claimed_at + lease / 2
        held = set(ids)
        for index, message in enumerate(batch):
            try:
                if index:
                    self._check_limits(deadline)
                self._throttle(started, deadline)
            except _Stop:
                self.result.released += release(token, [m.id for m in batch[index:]])
                raise
            if time.monotonic() >= renew_at:
                renew_at = time.monotonic() + lease / 2
                held = renew(token, [m.id for m in batch[index:]])
            if message.id not in held:
                continue  # taken over, cancelled or released meanwhile
            expires_at = self._expires_at(message)
            if expires_at is not None and expires_at <= timezone.now():
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
            if is_job_mail and normalize(message.to_address) in suppressed:
                self._record(message, token, LogResult.SUPPRESSED, None)
                continue
            try:
                envelope_from, recipients, data, message_id = self._build(message)
            except Exception as error:  # noqa: BLE001 - any build error fails one message
                outcome = Outcome(
                    Verdict.FAILED, None, f"cannot build message: {error}"
                )
                self._record(message, token, LogResult.FAILED, outcome)
                continue
            skipped: list[str] = []
            if not is_job_mail and suppressed:
                recipients, skipped = _without_blocked(recipients, suppressed)
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
                    self.result.released += quotas.defer_claimed(
                        token, rest, wait.until
                    )
                    raise _Stop(
                        f"rate limit ({wait.scope}) until {wait.until:%H:%M:%S}",
                        wait=wait.seconds,
                    )
                self.result.paced += quotas.defer_claimed(
                    token, [message.id], wait.until
                )
                continue
            outcome = self._deliver(envelope_from, recipients, data)
            if outcome.verdict is Verdict.STOP:
                self.result.released += release(token, [m.id for m in batch[index:]])
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
                relaypause.clear()
            if skipped:
                note = f"not sent to {', '.join(skipped)} (don't-send list)"
                reply = f"{outcome.reply}; {note}" if outcome.reply else note
                outcome = replace(outcome, reply=reply)
            if outcome.refused and message.job_id is None:
                # Some recipients refused, the others served: the refused ones
                # are retried alone or failed, in the transaction that records
                # the email as sent, so a crash cannot lose them.
                with transaction.atomic(using=self.writer.db):
                    self._record(message, token, None, outcome, message_id=message_id)
                    partial.record_refusals(
                        message,
                        outcome.refused,
                        data=data,
                        now=timezone.now(),
                        attempt=message.attempts + 1,
                    )
                continue
            self._record(message, token, None, outcome, message_id=message_id)

    def _throttle(self, started: float, deadline: float | None) -> None:
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

    # -- one message ------------------------------------------------------------

    def _suppressed_among(self, batch: list[Message]) -> dict[str, str]:
        """The don't-send entries (normalised address -> reason) that concern
        this batch: the reader of job mail, every envelope recipient of single
        mail. Checked right before sending, one query per batch: an
        unsubscribe that arrived after the job was expanded still stops the
        email."""
        addresses: set[str] = set()
        for message in batch:
            if message.job_id is None and message.envelope_to:
                addresses.update(normalize(a) for a in message.envelope_to)
            else:
                addresses.add(normalize(message.to_address))
        return dict(
            DontSendEntry.objects.filter(address__in=addresses).values_list(
                "address", "reason"
            )
        )

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

    def _template(self, job_id: int) -> JobTemplate:
        template = self.templates.get(job_id)
        if template is None:
            job = MessageJob.objects.defer("recipients").get(pk=job_id)
            headers = dict(job.headers or {})
            if job.list_id:
                headers.setdefault("List-Id", f"<{job.list_id}.{self.domain}>")
            if self.links.enabled:
                headers.setdefault(
                    "List-Unsubscribe-Post", "List-Unsubscribe=One-Click"
                )
            try:
                template = JobTemplate(
                    subject=job.subject,
                    from_email=job.from_email,
                    body_text=job.body_text,
                    body_html=job.body_html,
                    headers=headers,
                    message_id_domain=self.domain,
                )
            except Exception as error:  # noqa: BLE001 - remembered, fails each message
                template = error
            self.templates[job_id] = template
        if isinstance(template, Exception):
            raise template
        return template

    def _build(self, message: Message) -> tuple[str, list[str], bytes, str]:
        # Addresses were validated at the door (or at expansion), and are
        # validated again here, at a microsecond each: a row can reach the
        # queue without passing the door (an older version, an edit in the
        # database), and a relay may well take ``not-an-address`` as a local
        # mailbox (found by tests/test_bad_input.py). An invalid one fails
        # this message only.
        if message.job_id is None:
            # Case-insensitive duplicates go once (the don't-send list's rule):
            # ten thousand spellings of one address are one mailbox, not ten
            # thousand RCPTs of the same email (found by test_bad_input.py).
            recipients: dict[str, str] = {}
            for address in message.envelope_to or [message.to_address]:
                spec = envelope_address(address)
                recipients.setdefault(normalize(spec), spec)
            return (
                message.envelope_from,
                list(recipients.values()),
                bytes(message.mime),
                message.message_id,
            )
        template = self._template(message.job_id)
        to = envelope_address(message.to_address)
        url = self.links.url(message.to_address, message.job_id)
        values = {**(message.context or {}), "email": message.to_address}
        values["unsubscribe_url"] = url
        data, message_id = template.render(
            to, values, extra_headers=self.links.headers(url)
        )
        return template.envelope_from, [to], data, message_id

    def _deliver(
        self, envelope_from: str, recipients: list[str], data: bytes
    ) -> Outcome:
        last: Outcome | None = None
        for _ in range(MAX_RECONNECTS_PER_MESSAGE + 1):
            if self.connection.backend is None or (
                self.connection.is_smtp and self.connection.backend.connection is None
            ):
                try:
                    self.connection.open()
                except Exception as error:  # noqa: BLE001 - judged below
                    reason = outcomes.connect_failure(error)
                    if reason is None:
                        raise
                    return Outcome(Verdict.STOP, None, reason)
            try:
                refused = self.connection.send(envelope_from, recipients, data)
            except Exception as error:  # noqa: BLE001 - every error is classified
                # A 421 to the first MAIL FROM of a connection: the server is
                # not taking mail; stop like for a server that is down (found
                # by test_faults: a 421-only relay burned every attempt).
                unavailable = outcomes.refused_service(
                    error, fresh_connection=self.connection.accepted == 0
                )
                if unavailable is not None:
                    return Outcome(Verdict.STOP, error.smtp_code, unavailable)
                trouble = outcomes.relay_trouble(error)
                if trouble is not None:
                    return Outcome(
                        Verdict.STOP, getattr(error, "smtp_code", None), trouble
                    )
                last = outcomes.classify(error)
                if last.verdict is Verdict.RECONNECT:
                    logger.info("reconnecting after: %s", last.reply)
                    self.connection.close()
                    if self.connection.is_smtp:
                        self.connection.backend.connection = None
                    else:
                        self.connection.backend = None
                    continue
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
        now = timezone.now()
        attempts_added = 0 if result is LogResult.SUPPRESSED else 1
        attempt = message.attempts + attempts_added
        due_at = None
        retry = None
        if result is not LogResult.SUPPRESSED and outcome.verdict is Verdict.DEFERRED:
            # Time decides, not a count (MAILER_MAX_RETRY_SECONDS), and a
            # job's expiry ends retries early: see outcomes.next_try.
            retry = outcomes.next_try(
                attempt,
                queued_at=message.created_at,
                now=now,
                expires_at=self._expires_at(message),
            )
        if result is LogResult.SUPPRESSED:
            status = MessageStatus.SUPPRESSED
            self.result.suppressed += 1
        elif outcome.verdict is Verdict.SENT:
            result, status = LogResult.SENT, MessageStatus.SENT
            self.result.sent += 1
        elif outcome.verdict is Verdict.DEFERRED and retry.due_at:
            result, status = LogResult.DEFERRED, MessageStatus.DEFERRED
            due_at = retry.due_at
            self.result.deferred += 1
        else:
            result, status = LogResult.FAILED, MessageStatus.FAILED
            if outcome.verdict is Verdict.DEFERRED:
                outcome = Outcome(
                    Verdict.FAILED, outcome.code, f"{retry.reason}: {outcome.reply}"
                )
            self.result.failed += 1
        self._write(
            message=message,
            token=token,
            status=status,
            attempts_added=attempts_added,
            due_at=due_at,
            message_id=(message_id or "")[:255] or None,
            provider_id=self.connection.provider_id,
            result=result,
            smtp_code=outcome.code if outcome else None,
            reply=outcome.reply if outcome else "",
            attempt=attempt,
            now=now,
        )
        if (
            outcome is not None
            and outcome.no_such_user
            and message.job_id is not None
            and settings.SUPPRESS_ON_NO_SUCH_USER
        ):
            DontSendEntry.objects.get_or_create(
                address=normalize(message.to_address),
                defaults={
                    "reason": SuppressionReason.BOUNCED,
                    "note": f"{outcome.code} {outcome.reply}"[:500],
                },
            )

    def _write(self, **values) -> None:
        """Record an outcome the moment it is known, reconnecting to the
        database if its connection broke: the server has answered (perhaps
        accepted the email), and an outcome lost here would send the email
        again once the lease runs out. Found by test_crashes: a PostgreSQL
        restart mid-run cost one duplicate per worker; now the worker waits
        for the database and goes on."""
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


def _without_blocked(
    recipients: list[str], entries: dict[str, str]
) -> tuple[list[str], list[str]]:
    """Split single mail's envelope into (kept, skipped) by the don't-send
    list. An unsubscribe is from the newsletters: a reader who left them
    still gets their password reset. A bounce, a complaint or an entry the
    staff made stops all mail to the address."""
    kept, skipped = [], []
    for address in recipients:
        reason = entries.get(normalize(address))
        if reason is None or reason == SuppressionReason.UNSUBSCRIBED:
            kept.append(address)
        else:
            skipped.append(address)
    return kept, skipped


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
) -> SendResult:
    """Send due mail until the queue is empty or a limit is reached.

    Limits left as ``None`` come from the ``MAILER_*`` settings.
    """
    limits = Limits.from_settings(
        max_messages=max_messages,
        max_seconds=max_seconds,
        throttle=throttle,
        batch_size=batch_size,
    )
    return Sender(limits, should_stop=should_stop, on_progress=on_progress).run()


def retry_deferred(*, now=None) -> int:
    """Make every deferred message due now (and give held ones their turn)."""
    now = now or timezone.now()
    # A deferred message that a worker holds right now (token set, lease not
    # over) is left alone: making it due would let a second worker take it.
    unclaimed = Q(claim_token__isnull=True) | Q(due_at__lte=now)
    return (
        Message.objects.deferred()
        .filter(unclaimed)
        .update(status=MessageStatus.QUEUED, due_at=now)
    )


def purge_log(days: float, *, result: int | None = None) -> int:
    cutoff = timezone.now() - timedelta(days=days)
    qs = MessageLog.objects.filter(created_at__lt=cutoff)
    if result is not None:
        qs = qs.filter(result=result)
    deleted, _ = qs.delete()
    return deleted
