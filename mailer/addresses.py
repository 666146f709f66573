"""Email address parsing, validation and normalisation, in one place."""

from __future__ import annotations

import re
from email.errors import HeaderParseError
from email.utils import getaddresses

from django.core.exceptions import ValidationError
from django.core.mail.backends.smtp import EmailBackend as SMTPBackend
from django.core.validators import validate_email
from django.utils.encoding import punycode

from mailer.door import has_line_break
from mailer.exceptions import InvalidAddress

__all__ = ["normalize", "addr_spec", "envelope_address"]

#: The everyday address (ASCII dot-atom local part, letters-only TLD): a strict
#: subset of what Django's ``validate_email`` accepts, checked in a microsecond
#: instead of tens. Expansion validates every recipient of a 100,000-reader
#: newsletter; anything unusual still goes through Django's validator.
_PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)


def split_mailbox(address: str) -> tuple[str, str]:
    """``(display name, addr-spec)`` of ``"Name <local@domain>"`` or of a bare
    ``local@domain``, read strictly: the addr-spec is what stands between the
    last ``<`` and a final ``>``, or the whole (stripped) text. Nothing is
    repaired: ``"Ann <ann@example.com"`` gives the addr-spec
    ``"Ann <ann@example.com"``, which no validator accepts. (Python's own
    parser repairs some malformed addresses, differently on different patch
    levels; see CVE-2023-27043.)"""
    address = address.strip()
    if address.endswith(">"):
        start = address.rfind("<")
        if start >= 0:
            return address[:start].strip(), address[start + 1 : -1].strip()
    return "", address


def normalize(address: str) -> str:
    """The canonical identity of an address: what de-duplicates recipients
    (at the click and at expansion), and what the don't-send list stores and
    compares.

    The display name is dropped (``"Anna <anna@example.com>"`` is
    ``anna@example.com``); the addr-spec is lower-cased as a whole: strictly
    only the domain is case-insensitive, but every mailbox provider that
    matters treats the local part so too, and a reader who unsubscribed as
    ``Ann@X`` must not get mail as ``ann@x``.

    An internationalised domain is compared in punycode, the form the
    envelope uses: ``ann@bücher.example`` and ``ann@xn--bcher-kva.example``
    are one mailbox. Does not validate; an invalid address is compared as
    written (lower-cased).
    """
    address = address.strip().lower()
    if address.endswith(">"):
        address = split_mailbox(address)[1]
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
    name), validated, or raise :class:`InvalidAddress`.

    Refused: what Django's SMTP backend refuses (``sanitize_address``), what
    Django's ``EmailValidator`` refuses, and any text Python's parser would
    read as a different address than the strict reading of
    :func:`split_mailbox`: such an address is never rewritten into another.
    """
    if not isinstance(address, str):
        raise InvalidAddress(f"Invalid address {address!r}: not a string")
    if has_line_break(address):
        # Not a header yet, but an address this text can never be.
        raise InvalidAddress(f"Invalid address {address!r}: contains a line break")
    _name, spec = split_mailbox(address)
    local, _, domain = spec.rpartition("@")
    if domain.startswith("["):
        # RFC 5321 4.1.3 allows a host's IP address as the domain, but no
        # reader of a newsletter has one, Python 3.13's strict parser refuses
        # it while 3.11 and 3.12 accept it, and mail to bare IP addresses is
        # a spam-trap pattern: refused the same way on every version.
        raise InvalidAddress(
            f"Invalid address {address!r}: an address literal (an IP address "
            "in brackets) is not accepted; use the domain name"
        )
    parsed = getaddresses([address])
    if len(parsed) != 1 or not parsed[0][1]:
        raise InvalidAddress(f"Invalid address {address!r}: not a single address")
    # RFC 6531 lets a local part hold any non-ASCII UTF-8 character where an
    # ASCII letter may stand; Django's validator knows ASCII only, so it
    # checks the address with each such character standing in as "a". Such
    # an address is sent with SMTPUTF8 (mailer.sending.extensions).
    checked = spec if local.isascii() else f"{_ascii_stand_in(local)}@{domain}"
    try:
        validate_email(checked)
        smtp_backend_check(address)
    except (ValidationError, ValueError, IndexError, HeaderParseError):
        raise InvalidAddress(f"Invalid address {address!r}") from None
    if parsed[0][1] != spec:
        raise InvalidAddress(
            f"Invalid address {address!r}: ambiguous, it could be read as "
            f"{parsed[0][1]!r}"
        )
    return spec


def smtp_backend_check(address: str) -> None:
    """Raise ``ValueError`` (or the parser's ``HeaderParseError`` /
    ``IndexError``) for an address Django's SMTP backend would refuse to send
    to: ``EmailBackend.prep_address`` on Django 6.0+, ``sanitize_address``
    (deprecated there) on 5.2. A non-ASCII local part passes, as Django's
    backend passes it for a relay that offers SMTPUTF8 (``force_ascii=False``);
    the sender refuses it, clearly, only for a relay that does not (RFC 6531,
    ``mailer.sending.extensions``)."""
    prep_address = getattr(SMTPBackend, "prep_address", None)
    if prep_address is not None:
        # Reads no instance state: the backend's check without a backend.
        prep_address(None, address, force_ascii=False)
    else:
        from django.core.mail.message import sanitize_address

        sanitize_address(address, "utf-8")


def envelope_address(address: str) -> str:
    """``addr_spec`` with an internationalised domain in punycode, as the SMTP
    envelope needs it (``RCPT TO:<user@xn--...>``).

    Raises :class:`InvalidAddress` as ``addr_spec`` does. A non-ASCII local
    part stays as it is: it is sent with SMTPUTF8 (RFC 6531,
    ``mailer.sending.extensions``), or refused clearly by a relay without it.
    """
    if (
        isinstance(address, str)
        and len(address) <= 254
        and _PLAIN_ADDRESS.fullmatch(address)
    ):
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
