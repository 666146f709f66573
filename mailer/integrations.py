"""Optional integrations, each active only when its package is installed."""

from __future__ import annotations

from typing import Any

__all__ = ["connect_anymail", "on_anymail_tracking"]


def connect_anymail() -> None:
    """Learn from django-anymail's tracking webhooks: bounces, complaints and
    unsubscribes reported by the ESP put the address on the don't-send list."""
    try:
        from anymail.signals import tracking
    except ImportError:
        return
    tracking.connect(on_anymail_tracking, dispatch_uid="mailer.anymail.tracking")


#: anymail event types that mean "never mail this address again".
ANYMAIL_SUPPRESSING_EVENTS = {
    "bounced": "bounced",
    "complained": "complained",
    "unsubscribed": "unsubscribed",
}


def on_anymail_tracking(sender: Any, event: Any, esp_name: str, **kwargs: Any) -> None:
    """django-anymail's ``tracking`` signal receiver
    (https://anymail.dev/en/stable/sending/tracking/): a bounce, complaint or
    unsubscribe event puts ``event.recipient`` on the don't-send list
    (:func:`mailer.suppression.suppress`); a complaint also sends
    :data:`mailer.signals.complained`. Other events are ignored."""
    from mailer.models import DontSendEntry
    from mailer.suppression import suppress

    reason = ANYMAIL_SUPPRESSING_EVENTS.get(getattr(event, "event_type", None))
    recipient = getattr(event, "recipient", None)
    if reason is None or not recipient:
        return
    entry, _ = suppress(
        recipient, reason, f"{esp_name}: {event.event_type} {event.description or ''}"
    )
    if reason == "complained":
        # The same signal as a complaint report read by process_bounces, so a
        # subscriptions app listens in one place whichever way it arrived.
        from mailer.signals import complained

        complained.send(
            sender=DontSendEntry,
            address=entry.address,
            job=None,
            feedback_type=getattr(event, "reject_reason", None) or "abuse",
        )
