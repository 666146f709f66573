"""VERP: a signed token for each message in its envelope sender.

With ``MAILER_BOUNCE_ADDRESS = "bounces@news.example"`` message 123 goes out
with the reverse-path ``bounces+m123-<mac>@news.example``. A DSN comes back
to that address (RFC 5321 4.5.5: to the reverse-path), so the bounce names its
message, job and reader without guessing from the report's text. The MAC is
the first 10 bytes of an HMAC-SHA256 under ``SECRET_KEY`` (Django's
``salted_hmac``), base32 in lower case: mail systems may change the case of a
local part, and base32 survives that. A token whose MAC does not match is a
forgery (or from another site) and is ignored.
"""

from __future__ import annotations

import base64
import hmac
import re

from django.utils.crypto import salted_hmac

from mailer.conf import conf

__all__ = ["envelope_sender", "message_pk_from"]

_SALT = "mailer.bounces.verp"
#: MAC bytes in a token: 80 bits, 16 base32 characters.
MAC_BYTES = 10
_TOKEN = re.compile(r"m(?P<pk>[0-9]{1,19})-(?P<mac>[a-z2-7]{16})")


def _mac(pk: int) -> str:
    digest = salted_hmac(_SALT, str(pk), algorithm="sha256").digest()[:MAC_BYTES]
    return base64.b32encode(digest).decode("ascii").lower()


def token(message_pk: int) -> str:
    """The token for message ``message_pk``: ``m<pk>-<16 base32 chars>``."""
    return f"m{int(message_pk)}-{_mac(int(message_pk))}"


def envelope_sender(message_pk: int, bounce_address: str | None = None) -> str:
    """``local+TOKEN@domain`` for ``MAILER_BOUNCE_ADDRESS`` ``local@domain``.

    :raises ValueError: the bounce address has no ``@``.
    """
    address = bounce_address or conf.MAILER_BOUNCE_ADDRESS
    local, at, domain = (address or "").rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"MAILER_BOUNCE_ADDRESS {address!r} is not local@domain.")
    return f"{local}+{token(message_pk)}@{domain}"


def message_pk_from(address: str) -> int | None:
    """The message pk an envelope address (or a bare token) carries, or
    ``None`` when there is no token or its MAC does not match (forged)."""
    local = (address or "").strip().strip("<>").rpartition("@")[0] or address
    candidate = local.rpartition("+")[2].lower()
    match = _TOKEN.fullmatch(candidate)
    if match is None:
        return None
    pk = int(match["pk"])
    if not hmac.compare_digest(match["mac"], _mac(pk)):
        return None
    return pk
