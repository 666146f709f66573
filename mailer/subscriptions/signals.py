"""Signals of the subscriptions app.

Each is sent with ``sender=Subscription`` and ``subscription`` (the row,
after saving) and ``how`` (a :class:`~.models.Source` / ``Leaving`` value).
"""

from django.dispatch import Signal

__all__ = ["subscribed", "confirmed", "unsubscribed"]

#: A subscription was created or renewed (pending, or active without opt-in).
subscribed = Signal()
#: A pending subscription was confirmed (double opt-in) and is active.
confirmed = Signal()
#: A subscription left its list (one list: per-list link, preference centre,
#: admin; every list: "leave all", erase).
unsubscribed = Signal()
