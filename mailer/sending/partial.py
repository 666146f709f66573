"""Partial RCPT refusals: one email to many recipients, some refused.

A relay may accept an email for most of its recipients and refuse a few at
``RCPT TO`` (Postfix: ``452 4.5.3 Too many recipients``, a greylisting
``451``, a ``550 5.1.1`` for a mailbox that does not exist). smtplib then
sends the message to the accepted ones and reports the refused ones; the
email is *sent*, once, to those. The refused ones are tracked one by one
(RFC 5321 4.5.3.1.10 expects a client to retry the rest later):

- a 4xx recipient is retried alone: a new queued ``Message`` with the same
  bytes (the same Message-ID, so a receiver sees the same email), only the
  recipients to retry in its envelope, ``retry_of`` pointing at the
  original, due after the usual backoff, and queued "as of" the original
  (the retry window counts from the first try);
- a 5xx recipient has failed for good: a FAILED log row names it;
- everybody else got their one copy and is never sent it again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.db import router, transaction

from mailer.models import LogResult, Message, MessageLog, MessageStatus
from mailer.sending import outcomes

__all__ = ["Split", "record_refusals", "split_refusals"]


@dataclass
class Split:
    """The refused recipients of one accepted email, by what becomes of
    them: ``retry`` (4xx) and ``failed`` (5xx, or anything else), each
    address -> (code, reply text)."""

    retry: dict[str, tuple[int, str]] = field(default_factory=dict)
    failed: dict[str, tuple[int, str]] = field(default_factory=dict)


def split_refusals(refused: dict[str, tuple[int, bytes | str]]) -> Split:
    """Sort smtplib's ``sendmail()`` return value (refused recipient ->
    (code, reply)) into recipients to retry and recipients that failed.
    4xx (421 too) is temporary; everything else is permanent."""
    split = Split()
    for address, (code, reply) in refused.items():
        text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
        target = split.retry if 400 <= code < 500 else split.failed
        target[address] = (code, text)
    return split


def record_refusals(
    message: Message,
    refused: dict[str, tuple[int, bytes | str]],
    *,
    data: bytes,
    now: datetime,
    attempt: int,
) -> Message | None:
    """Log the refused recipients of ``message`` (sent to the others at
    ``now``, its ``attempt``-th try) and queue the temporary ones again,
    alone; return the new message, or None when nobody is to be retried.

    Runs in one transaction, so the retry and the log rows exist together;
    call it in the same transaction that records ``message`` as sent, so a
    crash cannot lose the recipients still to be served. A 4xx recipient
    whose retry window (``MAILER_MAX_RETRY_SECONDS``) is over fails instead.
    """
    split = split_refusals(refused)
    retry = outcomes.next_try(attempt, queued_at=message.created_at, now=now)
    if retry.due_at is None:
        for address, (code, text) in split.retry.items():
            split.failed[address] = (code, f"{retry.reason}: {text}")
        split.retry = {}
    db = router.db_for_write(Message)
    with transaction.atomic(using=db):
        again = None
        if split.retry:
            recipients = list(split.retry)
            again = Message.all_objects.using(db).create(
                priority=message.priority,
                status=MessageStatus.DEFERRED,
                due_at=retry.due_at,
                attempts=attempt,
                to_address=recipients[0],
                envelope_from=message.envelope_from,
                envelope_to=recipients,
                subject=message.subject,
                mime=data,
                message_id=message.message_id,
                created_at=message.created_at,
                retry_of=message,
            )
        logs = [
            MessageLog(
                message_pk=again.pk if result == LogResult.DEFERRED else message.pk,
                recipient=address[:320],
                subject=message.subject[:255],
                result=result,
                smtp_code=code,
                reply=text[:2000],
                attempt=attempt,
                message_id=(message.message_id or "")[:255],
                created_at=now,
            )
            for result, group in (
                (LogResult.DEFERRED, split.retry),
                (LogResult.FAILED, split.failed),
            )
            for address, (code, text) in group.items()
        ]
        MessageLog.objects.using(db).bulk_create(logs)
    return again
