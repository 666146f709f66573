"""Signals the site can listen to."""

from django.dispatch import Signal

__all__ = ["unsubscribed", "complained"]

#: Sent after an address unsubscribed through a one-click link.
#: Arguments: ``address`` (normalised), ``job`` (the MessageJob or None).
unsubscribed = Signal()

#: Sent after a complaint report (RFC 5965) put an address on the don't-send
#: list (``process_bounces``). Arguments: ``address`` (normalised), ``job``
#: (the MessageJob or None), ``feedback_type`` ("abuse", ...). A
#: subscriptions app unsubscribes the address from every list here.
complained = Signal()
