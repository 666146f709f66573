"""Email address parsing, validation and normalisation, in one place."""

from __future__ import annotations

import re
from email.utils import getaddresses

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils.encoding import punycode

from mailer.exceptions import InvalidAddress

#: The everyday address (ASCII dot-atom local part, letters-only TLD): a strict
#: subset of what Django's ``validate_email`` accepts, checked in a microsecond
#: instead of tens. Expansion validates every recipient of a 100,000-reader
#: newsletter; anything unusual still goes through Django's validator.
_PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)


def normalize(address: str) -> str:
    """The form stored in the don't-send list and compared against it.

    Lower-cased as a whole: strictly only the domain is case-insensitive, but
    every mailbox provider that matters treats the local part so too, and a
    reader who unsubscribed as ``Ann@X`` must not get mail as ``ann@x``.

    An internationalised domain is compared in punycode, the form the
    envelope uses: ``ann@bücher.example`` and ``ann@xn--bcher-kva.example``
    are one mailbox.
    """
    address = address.strip().lower()
    if address.isascii():
        return address
    local, at, domain = address.rpartition("@")
    if not at or domain.isascii():
        return address
    try:
        return f"{local}@{punycode(domain)}"
    except UnicodeError:
        return address  # not a valid domain; compared as written


def addr_spec(address: str) -> str:
    """Return the bare ``local@domain`` of ``address`` (which may carry a display
    name), validated, or raise :class:`InvalidAddress`."""
    if not isinstance(address, str):
        raise InvalidAddress(f"Invalid address {address!r}: not a string")
    if "\n" in address or "\r" in address:
        raise InvalidAddress(f"Invalid address {address!r}: contains a line break")
    parsed = getaddresses([address])
    if len(parsed) != 1 or not parsed[0][1]:
        raise InvalidAddress(f"Invalid address {address!r}: not a single address")
    spec = parsed[0][1]
    local, _, domain = spec.rpartition("@")
    # RFC 6531 lets a local part hold any non-ASCII UTF-8 character where an
    # ASCII letter may stand; Django's validator knows ASCII only, so it
    # checks the address with each such character standing in as "a". Such
    # an address is sent with SMTPUTF8 (mailer.sending.extensions).
    checked = spec if local.isascii() else f"{_ascii_stand_in(local)}@{domain}"
    try:
        validate_email(checked)
    except ValidationError:
        raise InvalidAddress(f"Invalid address {address!r}") from None
    return spec


def envelope_address(address: str) -> str:
    """``addr_spec`` with an internationalised domain in punycode, as the SMTP
    envelope needs it (``RCPT TO:<user@xn--...>``)."""
    if len(address) <= 254 and _PLAIN_ADDRESS.fullmatch(address):
        return address
    spec = addr_spec(address)
    local, _, domain = spec.rpartition("@")
    if domain and not domain.isascii():
        domain = punycode(domain)
    return f"{local}@{domain}"


def _ascii_stand_in(local: str) -> str:
    # Non-ASCII spaces and control characters stay, and fail validation.
    return "".join(
        "a" if not c.isascii() and c.isprintable() and not c.isspace() else c
        for c in local
    )
