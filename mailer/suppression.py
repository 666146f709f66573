"""The don't-send list: adding to it, and who is on it."""

from __future__ import annotations

from django.db import transaction

from mailer.addresses import normalize
from mailer.models import DontSendEntry, MessageJob, SuppressionReason
from mailer.signals import unsubscribed

__all__ = ["suppressed", "unsubscribe"]


def unsubscribe(address: str, *, job_id: int | None = None) -> DontSendEntry:
    """Put ``address`` (normalized) on the don't-send list as unsubscribed,
    and send ``mailer.signals.unsubscribed(address, job)``, ``job`` being
    the ``MessageJob`` of ``job_id`` or ``None``. Returns the entry.

    Idempotent: a second click changes nothing, but the site is told again
    (its own subscriber flag may have been reset meanwhile). An address
    already on the list for another reason keeps that reason.
    """
    address = normalize(address)
    with transaction.atomic():
        entry, _ = DontSendEntry.objects.get_or_create(
            address=address, defaults={"reason": SuppressionReason.UNSUBSCRIBED}
        )
    job = (
        MessageJob.objects.defer("recipients").filter(pk=job_id).first()
        if job_id
        else None
    )
    unsubscribed.send(sender=DontSendEntry, address=address, job=job)
    return entry


def suppressed(addresses: set[str]) -> set[str]:
    """The normalised addresses among ``addresses`` that are on the list."""
    return set(
        DontSendEntry.objects.filter(
            address__in={normalize(a) for a in addresses}
        ).values_list("address", flat=True)
    )
