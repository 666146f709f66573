"""Turn parsed bounce mail into log rows and don't-send entries.

A hard bounce (5.x.x) puts the address on the don't-send list at once
(reason bounced). A soft one is logged; the address goes on the list when it
has ``MAILER_SOFT_BOUNCE_LIMIT`` soft bounces within ``MAILER_SOFT_BOUNCE_DAYS``
(counted from the log, so no second table to keep in step). A complaint puts
it on the list (reason complained) and sends ``mailer.signals.complained``.
Each event is one ``MessageLog`` row on its message, which the job report
counts like any other result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from mailer.addresses import normalize
from mailer.bounces.parse import COMPLAINT, HARD, Failure, Report, parse
from mailer.conf import conf
from mailer.models import (
    DontSendEntry,
    LogResult,
    Message,
    MessageJob,
    MessageLog,
    SuppressionReason,
)
from mailer.signals import complained
from mailer.suppression import suppress

__all__ = ["ProcessResult", "process_bytes", "record"]

_RESULTS = {
    HARD: LogResult.BOUNCED,
    COMPLAINT: LogResult.COMPLAINED,
}


@dataclass
class ProcessResult:
    """Counts of one ``process_bounces`` run (mails, not recipients, except
    ``suppressed``), and the mails left in place with the reason."""

    processed: int = 0
    hard: int = 0
    soft: int = 0
    complaints: int = 0
    suppressed: int = 0
    unmatched: int = 0
    unreadable: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """The one line ``process_bounces`` prints."""
        return (
            f"{self.processed} processed: {self.hard} hard bounces, "
            f"{self.soft} soft bounces, {self.complaints} complaints, "
            f"{self.suppressed} addresses suppressed, {self.unmatched} without "
            f"a message of ours; {len(self.unreadable)} unreadable, left in place."
        )


def process_bytes(data: bytes, result: ProcessResult, *, name: str = "") -> bool:
    """Parse and record one bounce mail. Return ``True`` when it was read
    (the reader may then mark, move or remove it), ``False`` when it is left
    in place; its ``name`` is then listed in ``result.unreadable``."""
    report = parse(data)
    if not report.readable:
        result.unreadable.append(name or "(stdin)")
        return False
    record(report, result)
    result.processed += 1
    return True


def _message_for(report: Report) -> Message | None:
    fields = ("pk", "job_id", "to_address", "envelope_to", "subject", "message_id")
    if report.message_pk is not None:
        message = Message.all_objects.filter(pk=report.message_pk).only(*fields)
        if (found := message.first()) is not None:
            return found
    if report.message_id:
        # No token (VERP off, or a relay rewrote the sender): the returned
        # original's Message-ID, which the engine stored at sending.
        return (
            Message.all_objects.filter(message_id=report.message_id)
            .only(*fields)
            .first()
        )
    return None


def _ours(message: Message, failure: Failure) -> bool:
    """The failed address is one this message was sent to: a token for
    message A must not suppress an address A never went to."""
    sent_to = {normalize(message.to_address)}
    sent_to.update(normalize(a) for a in message.envelope_to or [])
    return normalize(failure.address) in sent_to


def record(report: Report, result: ProcessResult) -> None:
    """Write one report's events (one transaction)."""
    message = _message_for(report)
    failures = report.failures
    if message is not None and message.job_id is not None and len(failures) == 1:
        # A job email has one reader. A complaint report whose recipient is
        # redacted, or a provider's rewritten address, still names it by the
        # token.
        if not _ours(message, failures[0]) and report.message_pk == message.pk:
            failures = [
                Failure(
                    message.to_address,
                    failures[0].kind,
                    failures[0].status,
                    failures[0].diagnostic,
                )
            ]
    if message is None:
        # Anyone can mail the bounce address: a report that names no
        # message of ours (no token, a forged one, an unknown Message-ID)
        # suppresses nobody. It is counted, and filed as processed.
        result.unmatched += 1
        return
    kinds = {f.kind for f in failures}
    result.complaints += COMPLAINT in kinds
    result.hard += HARD in kinds
    result.soft += bool(kinds - {COMPLAINT, HARD})
    now = timezone.now()
    job = None
    complainers: list[tuple[str, str]] = []
    with transaction.atomic():
        for failure in failures:
            if not _ours(message, failure):
                continue
            address = normalize(failure.address)
            MessageLog.objects.create(
                message_pk=message.pk,
                job_id=message.job_id,
                recipient=address,
                subject=(message.subject or "")[:255],
                result=_RESULTS.get(failure.kind, LogResult.SOFT_BOUNCED),
                reply=" ".join(filter(None, [failure.status, failure.diagnostic])),
                message_id=message.message_id or "",
                created_at=now,
            )
            if failure.kind == COMPLAINT:
                reason, note = SuppressionReason.COMPLAINED, failure.diagnostic
            elif failure.kind == HARD:
                reason = SuppressionReason.BOUNCED
                note = f"{failure.status} {failure.diagnostic}".strip()
            elif _soft_bounces(address, now) >= conf.MAILER_SOFT_BOUNCE_LIMIT:
                reason = SuppressionReason.BOUNCED
                note = (
                    f"{conf.MAILER_SOFT_BOUNCE_LIMIT} soft bounces within "
                    f"{conf.MAILER_SOFT_BOUNCE_DAYS:g} days; last: "
                    f"{failure.status} {failure.diagnostic}"
                )
            else:
                continue
            _, created = suppress(address, reason, note)
            result.suppressed += created
            if failure.kind == COMPLAINT:
                complainers.append((address, failure.diagnostic))
    # Told after the commit, so a listener (a subscriptions app) sees the
    # entry, and its own failure cannot undo the record.
    if complainers and message.job_id:
        job = MessageJob.objects.defer("recipients").filter(pk=message.job_id).first()
    for address, feedback_type in complainers:
        complained.send(
            sender=DontSendEntry, address=address, job=job, feedback_type=feedback_type
        )


def _soft_bounces(address: str, now) -> int:
    since = now - timedelta(days=conf.MAILER_SOFT_BOUNCE_DAYS)
    return MessageLog.objects.filter(
        recipient=address, result=LogResult.SOFT_BOUNCED, created_at__gte=since
    ).count()
