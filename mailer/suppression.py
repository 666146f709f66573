"""The don't-send list: adding to it, and who is on it."""

from __future__ import annotations

from django.db import transaction

from mailer.addresses import normalize
from mailer.models import DontSendEntry, MessageJob, SuppressionReason
from mailer.signals import unsubscribed

__all__ = ["suppressed", "unsubscribe"]


def unsubscribe(address: str, *, job_id: int | None = None) -> DontSendEntry:
    """Idempotent: a second click changes nothing, but the site is told again
    (its own subscriber flag may have been reset meanwhile)."""
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
