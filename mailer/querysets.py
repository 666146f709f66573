"""Chainable filters over the queue, shared by the engine, admin and commands."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import models
from django.utils import timezone

__all__ = [
    "MessageQuerySet",
    "QueueManager",
    "DontSendEntryManager",
    "MessageLogManager",
]


class MessageQuerySet(models.QuerySet):
    """Filters over ``Message`` rows (Django's custom ``QuerySet`` methods,
    https://docs.djangoproject.com/en/stable/topics/db/managers/), with
    django-mailer's manager methods kept under their names."""

    def pending(self) -> MessageQuerySet:
        """Waiting to go out (queued or deferred), claimed or not."""
        from mailer.models import PENDING_STATUSES

        return self.filter(status__in=PENDING_STATUSES)

    def due(self, now: datetime | None = None) -> MessageQuerySet:
        """Pending and due now, in the order they must go out.

        A claimed message has ``due_at`` at its lease's end, so it is not due
        until the lease runs out; a message that left the queue has no
        ``due_at``. This one filter is the whole claim rule, and it matches
        the partial index ``mailer_message_claim`` on every database.

        "Now" is the database's (``mailer.dbclock``), not this process's,
        unless ``now`` is given.
        """
        from mailer.dbclock import DbNow

        return self.filter(due_at__lte=now or DbNow(upper_bound=True)).order_by(
            "priority", "due_at", "id"
        )

    def deferred(self) -> MessageQuerySet:
        """Deferred messages (held, or waiting for their next try)."""
        from mailer.models import MessageStatus

        return self.filter(status=MessageStatus.DEFERRED)

    # -- django-mailer's manager methods (``Message.objects.high_priority()``,
    # ...). Each means mail still to send, on either manager.

    def _queued(self) -> MessageQuerySet:
        return self.filter(due_at__isnull=False)

    def high_priority(self) -> MessageQuerySet:
        """Pending mail of high priority."""
        return self._queued().filter(priority=1)

    def medium_priority(self) -> MessageQuerySet:
        """Pending mail of medium priority."""
        return self._queued().filter(priority=2)

    def low_priority(self) -> MessageQuerySet:
        """Pending mail of low priority."""
        return self._queued().filter(priority=3)

    def non_deferred(self) -> MessageQuerySet:
        """Pending mail that is not deferred or held: what a send run takes
        (once due)."""
        from mailer.models import MessageStatus

        return self._queued().exclude(status=MessageStatus.DEFERRED)

    def retry_deferred(self, new_priority: int | str = 2) -> int:
        """django-mailer's ``Message.objects.retry_deferred()``: make the
        deferred and held messages among these due now, at ``new_priority``
        (default medium, as django-mailer's); return how many. With
        ``MAILER_EMAIL_MAX_RETRIES`` set, a message that has used its retries
        is left alone, as django-mailer leaves it."""
        from mailer.sending.engine import retry_deferred

        return retry_deferred(queryset=self, priority=new_priority)


class QueueManager(models.Manager.from_queryset(MessageQuerySet)):
    """``Message.objects``: the rows still to send (``due_at`` set), which
    is what django-mailer's ``Message`` table held. The filter is the claim
    index's own condition, so queries through it use that index."""

    def get_queryset(self) -> MessageQuerySet:
        return super().get_queryset().filter(due_at__isnull=False)


class DontSendEntryManager(models.Manager):
    """``DontSendEntry.objects``, with django-mailer's ``has_address``."""

    def has_address(self, address: str) -> bool:
        """django-mailer's ``DontSendEntry.objects.has_address``: is
        ``address`` (with or without a display name, any case) on the
        don't-send list? Kept for sites that call it; the rule is
        :func:`mailer.suppression.is_suppressed`."""
        from mailer.suppression import is_suppressed

        return is_suppressed(address)


class MessageLogManager(models.Manager):
    """``MessageLog.objects``, with django-mailer's ``purge_old_entries``."""

    def purge_old_entries(
        self, days: float, result_codes: list[str | int] | None = None
    ) -> int:
        """django-mailer's ``MessageLog.objects.purge_old_entries``: delete
        entries older than ``days`` days with one of ``result_codes``
        (django-mailer's ``RESULT_SUCCESS`` "1", ``RESULT_DONT_SEND`` "2",
        ``RESULT_FAILURE`` "3", or our ``LogResult`` values); by default the
        successes only, as django-mailer. Return how many were deleted."""
        from mailer.legacy.api import log_results

        cutoff = timezone.now() - timedelta(days=days)
        codes = ["1"] if result_codes is None else result_codes
        deleted, _ = self.filter(
            created_at__lt=cutoff, result__in=log_results(codes)
        ).delete()
        return deleted
