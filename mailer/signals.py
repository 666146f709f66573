"""Signals the site can listen to."""

from django.dispatch import Signal

#: Sent after an address unsubscribed through a one-click link.
#: Arguments: ``address`` (normalised), ``job`` (the MessageJob or None).
unsubscribed = Signal()
