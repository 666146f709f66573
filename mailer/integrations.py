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
    """Receiver of django-anymail's ``tracking`` signal
    (https://anymail.dev/en/stable/sending/tracking/): a bounce, complaint
    or unsubscribe event puts its recipient on the don't-send list, with the
    ESP's name and description as the note. Other events are ignored."""
    from mailer.addresses import normalize
    from mailer.models import DontSendEntry

    reason = ANYMAIL_SUPPRESSING_EVENTS.get(getattr(event, "event_type", None))
    recipient = getattr(event, "recipient", None)
    if reason is None or not recipient:
        return
    DontSendEntry.objects.get_or_create(
        address=normalize(recipient),
        defaults={
            "reason": reason,
            "note": f"{esp_name}: {event.event_type} {event.description or ''}"[:500],
        },
    )
    if reason == "complained":
        # The same signal as a complaint report read by process_bounces, so a
        # subscriptions app listens in one place whichever way it arrived.
        from mailer.signals import complained

        complained.send(
            sender=DontSendEntry,
            address=normalize(recipient),
            job=None,
            feedback_type=getattr(event, "reject_reason", None) or "abuse",
        )
