"""Chainable filters over the queue, shared by the engine, admin and commands."""

from __future__ import annotations

from datetime import datetime

from django.db import models


class MessageQuerySet(models.QuerySet):
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

        return self.filter(due_at__lte=now or DbNow()).order_by(
            "priority", "due_at", "id"
        )

    def deferred(self) -> MessageQuerySet:
        from mailer.models import MessageStatus

        return self.filter(status=MessageStatus.DEFERRED)
