"""Signed links, one salt per purpose, so a link does one thing only: a
confirmation token cannot be replayed as an unsubscribe token, nor the
reverse (``django.core.signing``; the salt is part of the key).

- confirm: ``[address, [list ids]]``, timestamped, expires after
  ``MAILER_SUBSCRIPTIONS_CONFIRM_DAYS``.
- unsubscribe: ``[address, [list ids]]``, no expiry (RFC 8058 links in
  months-old mail keep working).
- preferences: ``[address]``, no expiry: the link in every email.
"""

from __future__ import annotations

from django.core import signing

from mailer.addresses import normalize

from .conf import settings

__all__ = ["CONFIRM", "PREFERENCES", "UNSUBSCRIBE", "make", "read"]

CONFIRM = "mailer.subscriptions.confirm"
UNSUBSCRIBE = "mailer.subscriptions.unsubscribe"
PREFERENCES = "mailer.subscriptions.preferences"


def make(purpose: str, address: str, list_ids: list[int] | None = None) -> str:
    """A signed token for ``purpose`` (:data:`CONFIRM`, :data:`UNSUBSCRIBE`
    or :data:`PREFERENCES`, also the salt) holding the normalized
    ``address`` and, when given, the list ids. Confirmation tokens carry a
    timestamp and expire after ``MAILER_SUBSCRIPTIONS_CONFIRM_DAYS``; the
    others do not expire. Django's cryptographic signing
    (https://docs.djangoproject.com/en/stable/topics/signing/)."""
    value = (
        [normalize(address)]
        if list_ids is None
        else [normalize(address), sorted(list_ids)]
    )
    if purpose == CONFIRM:
        return signing.TimestampSigner(salt=purpose).sign_object(value)
    return signing.Signer(salt=purpose).sign_object(value)


def read(purpose: str, token: str) -> tuple[str, list[int]]:
    """``(address, list ids)``; raises ``signing.BadSignature`` (and its
    subclass ``SignatureExpired``) for a forged, damaged, expired or
    other-purpose token."""
    if purpose == CONFIRM:
        value = signing.TimestampSigner(salt=purpose).unsign_object(
            token, max_age=settings.CONFIRM_MAX_AGE
        )
    else:
        value = signing.Signer(salt=purpose).unsign_object(token)
    if (
        not isinstance(value, list)
        or not value
        or not isinstance(value[0], str)
        or (len(value) > 1 and not all(isinstance(i, int) for i in value[1]))
    ):
        raise signing.BadSignature("malformed token")
    return value[0], list(value[1]) if len(value) > 1 else []
