"""The don't-send list (:class:`~mailer.models.DontSendEntry`): the one module
that writes it and answers who is on it.

Every path that learns an address must not be mailed calls :func:`suppress`
(a 5.1.1 reply in the engine, a bounce or complaint report, an ESP webhook)
or :func:`unsubscribe` (a one-click link); every check before expanding or
sending asks :func:`suppressed` or :func:`reasons`. Addresses are stored and
compared normalised (:func:`mailer.addresses.normalize`), so ``Ann@Example.COM``
and ``ann@example.com`` are one entry.
"""

from __future__ import annotations

from collections.abc import Iterable
from email.utils import parseaddr

from django.db import transaction

from mailer.addresses import normalize
from mailer.models import DontSendEntry, MessageJob, SuppressionReason
from mailer.signals import unsubscribed

__all__ = [
    "forget",
    "is_suppressed",
    "reasons",
    "suppress",
    "suppressed",
    "unsubscribe",
    "without_blocked",
]

#: Rows per ``address IN (...)`` query: well under SQLite's 32,766 bound
#: parameters and PostgreSQL's 65,535.
CHUNK = 5000


def suppress(address: str, reason: str, note: str = "") -> tuple[DontSendEntry, bool]:
    """Put ``address`` on the don't-send list, unless it is there already.

    ``address``: a bare address (``str``), normalised here. ``reason``: a
    :class:`~mailer.models.SuppressionReason` value (``"bounced"``,
    ``"complained"``, ...). ``note``: why, for the staff (truncated to 500
    characters). An existing entry keeps its first reason and note.

    Returns ``(entry, created)`` like Django's ``QuerySet.get_or_create``,
    whose race handling (``IntegrityError`` -> read again) it relies on. Sends
    no signal: the caller knows whether the site must hear of it, and when
    (after its own transaction commits).
    """
    return DontSendEntry.objects.get_or_create(
        address=normalize(address),
        defaults={"reason": reason, "note": note[:500]},
    )


def unsubscribe(address: str, *, job_id: int | None = None) -> DontSendEntry:
    """Record a one-click unsubscribe (RFC 8058) and send
    :data:`mailer.signals.unsubscribed` (``address`` normalised, ``job`` the
    :class:`~mailer.models.MessageJob` or None).

    Idempotent: a second click changes nothing, but the site is told again
    (its own subscriber flag may have been reset meanwhile)."""
    address = normalize(address)
    with transaction.atomic():
        entry, _ = suppress(address, SuppressionReason.UNSUBSCRIBED)
    job = (
        MessageJob.objects.defer("recipients").filter(pk=job_id).first()
        if job_id
        else None
    )
    unsubscribed.send(sender=DontSendEntry, address=address, job=job)
    return entry


def is_suppressed(address: str) -> bool:
    """Is ``address`` (with or without a display name, any case) on the list,
    for any reason? One indexed query."""
    spec = parseaddr(address)[1] or address
    return DontSendEntry.objects.filter(address=normalize(spec)).exists()


def reasons(addresses: Iterable[str]) -> dict[str, str]:
    """The entries that concern ``addresses``: normalised address -> reason
    (a :class:`~mailer.models.SuppressionReason` value). One query per
    :data:`CHUNK` addresses."""
    keys = sorted({normalize(a) for a in addresses})
    found: dict[str, str] = {}
    for start in range(0, len(keys), CHUNK):
        found.update(
            DontSendEntry.objects.filter(
                address__in=keys[start : start + CHUNK]
            ).values_list("address", "reason")
        )
    return found


def suppressed(addresses: Iterable[str]) -> set[str]:
    """The normalised addresses among ``addresses`` that are on the list, for
    any reason. An empty list costs one query, however many addresses are
    asked about (a newsletter of 100,000 readers to a site that never had a
    bounce)."""
    if not DontSendEntry.objects.exists():
        return set()
    return set(reasons(addresses))


def without_blocked(
    recipients: list[str], entries: dict[str, str]
) -> tuple[list[str], list[str]]:
    """Split single mail's envelope into (kept, skipped) by the don't-send
    list (``entries`` as returned by :func:`reasons`). An unsubscribe is from
    the newsletters: a reader who left them still gets their password reset.
    A bounce, a complaint or an entry the staff made stops all mail to the
    address."""
    kept, skipped = [], []
    for address in recipients:
        reason = entries.get(normalize(address))
        if reason is None or reason == SuppressionReason.UNSUBSCRIBED:
            kept.append(address)
        else:
            skipped.append(address)
    return kept, skipped


def forget(address: str) -> int:
    """Remove ``address``'s entry (an erasure request, GDPR art. 17). Returns
    the number of entries deleted (0 or 1)."""
    count, _ = DontSendEntry.objects.filter(address=normalize(address)).delete()
    return count
