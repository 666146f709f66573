"""What a message needs from the SMTP conversation: the greeting name, the
trusted CA for TLS, and the ``MAIL FROM`` parameters (SIZE, 8BITMIME,
SMTPUTF8), judged against what the relay's EHLO offers.

A real Postfix showed each of these going wrong: the queue takes up to
10 MiB while the relay says ``SIZE 10240000`` (the message then fails after
all its bytes went over the wire); 8-bit bodies go out without
``BODY=8BITMIME``; non-ASCII local parts without ``SMTPUTF8``; the greeting
says "localhost"; a relay with a private CA can only be trusted through an
environment variable. Pure functions over an ``smtplib.SMTP`` connection, so
any engine (today's ``sendmail()``, a staged exchange) can call them.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from django.core.mail.utils import DNS_NAME
from django.utils.encoding import punycode

from mailer.conf import conf

__all__ = [
    "CertificateNotTrusted",
    "ExtensionRefused",
    "helo_name",
    "mail_options",
    "open_smtp",
]


class ExtensionRefused(ValueError):
    """The message cannot go to this relay as it is (too big for its SIZE,
    or it needs SMTPUTF8 the relay lacks). A ``ValueError``, so
    ``mailer.sending.outcomes.classify`` fails the message for good with this
    reason, before ``DATA``."""


class CertificateNotTrusted(ConnectionError):
    """The relay's TLS certificate did not verify. A ``ConnectionError``
    (``OSError``), so the run stops like for a relay that cannot be
    reached, naming host:port and the fix."""


def helo_name() -> str:
    """The name to greet the relay with (EHLO/HELO, RFC 5321 4.1.1.1): the
    ``MAILER_HELO_NAME`` setting, else the host of ``MAILER_SITE_URL``, else
    Django's ``DNS_NAME`` (the machine's FQDN, often "localhost" in a
    container, which strict relays and spam filters hold against us). An
    internationalised name is sent in punycode."""
    name = conf.MAILER_HELO_NAME
    if not name and conf.MAILER_SITE_URL:
        name = urlsplit(conf.MAILER_SITE_URL).hostname
    name = name or DNS_NAME.get_fqdn()
    return name if name.isascii() else punycode(name)


def trusted_context(
    ca_file: str, certfile: str | None = None, keyfile: str | None = None
) -> ssl.SSLContext:
    """A client TLS context that trusts the CA(s) in ``ca_file`` (PEM) in
    addition to the system's, verification and host name checking on;
    with the client certificate of Django's ``EMAIL_SSL_CERTFILE`` /
    ``EMAIL_SSL_KEYFILE`` when set. Raises ``OSError`` for a missing file and
    ``ssl.SSLError`` for one that holds no certificate."""
    context = ssl.create_default_context(cafile=ca_file)
    context.load_default_certs()
    if certfile or keyfile:
        context.load_cert_chain(certfile, keyfile)
    return context


def open_smtp(backend: Any) -> bool:
    """Open Django's SMTP ``EmailBackend`` the way its ``open()`` does, but
    greeting with :func:`helo_name` and trusting ``MAILER_SSL_CA_FILE``.

    Returns False if it was open already. Raises
    :class:`CertificateNotTrusted` when the relay's certificate does not
    verify (the message names host:port and ``MAILER_SSL_CA_FILE``), and
    whatever ``smtplib`` raises otherwise (``OSError``,
    ``SMTPException``). Use it only for a backend whose class keeps
    Django's ``open()``; a subclass with its own keeps it.
    """
    if backend.connection:
        return False
    ca_file = conf.MAILER_SSL_CA_FILE
    if ca_file and (backend.use_tls or backend.use_ssl):
        # ssl_context is a cached_property: an instance attribute replaces it.
        backend.ssl_context = trusted_context(
            ca_file, backend.ssl_certfile, backend.ssl_keyfile
        )
    params: dict[str, Any] = {"local_hostname": helo_name()}
    if backend.timeout is not None:
        params["timeout"] = backend.timeout
    if backend.use_ssl:
        params["context"] = backend.ssl_context
    connection = None
    try:
        connection = backend.connection_class(backend.host, backend.port, **params)
        if not backend.use_ssl and backend.use_tls:
            connection.starttls(context=backend.ssl_context)
        if backend.username and backend.password:
            connection.login(backend.username, backend.password)
    except ssl.SSLCertVerificationError as error:
        _close(connection)
        hint = (
            f"check that MAILER_SSL_CA_FILE ({ca_file}) holds the CA that signed it"
            if ca_file
            else "set MAILER_SSL_CA_FILE to the CA file that signed it"
        )
        raise CertificateNotTrusted(
            f"TLS certificate of {backend.host}:{backend.port} not trusted: "
            f"CERTIFICATE_VERIFY_FAILED ({error.verify_message}); {hint}"
        ) from error
    except BaseException:
        _close(connection)
        raise
    backend.connection = connection
    return True


def _close(connection: smtplib.SMTP | None) -> None:
    if connection is None:
        return
    try:
        connection.close()
    except OSError:
        pass  # half-open; nothing to save


def needs_smtputf8(addresses: Sequence[str]) -> bool:
    """True when an envelope address has a non-ASCII local part (RFC 6531);
    a non-ASCII domain alone is sent in punycode instead."""
    return any(not address.rpartition("@")[0].isascii() for address in addresses)


def mail_options(
    connection: smtplib.SMTP,
    data: bytes,
    envelope_from: str,
    recipients: Sequence[str],
) -> list[str]:
    """The ``MAIL FROM`` parameters for one message, for
    ``sendmail(..., mail_options=...)``; greets first if the connection has
    not yet (EHLO tells what the relay offers).

    - ``SIZE`` (RFC 1870): smtplib adds ``SIZE=n`` itself; here a message
      bigger than the relay's advertised maximum raises
      :class:`ExtensionRefused` before anything is sent.
    - ``BODY=8BITMIME`` (RFC 6152) when the message has 8-bit bytes and the
      relay offers it. A relay without it still gets the message as today
      (Django writes 8-bit text parts; every relay in use takes them).
    - ``SMTPUTF8`` (RFC 6531) when an address has a non-ASCII local part and
      the relay offers it; without it :class:`ExtensionRefused`: such an
      address cannot be written in plain SMTP at all.
    """
    connection.ehlo_or_helo_if_needed()
    options: list[str] = []
    if connection.does_esmtp and connection.has_extn("size"):
        advertised = (connection.esmtp_features.get("size") or "").strip()
        limit = int(advertised) if advertised.isdigit() else 0
        if limit and len(data) > limit:
            raise ExtensionRefused(
                f"the email is {len(data):,} bytes, over the {limit:,} bytes "
                f"{_relay(connection)} accepts (its EHLO SIZE)"
            )
    if not data.isascii() and connection.has_extn("8bitmime"):
        options.append("BODY=8BITMIME")
    addresses = [envelope_from, *recipients]
    if needs_smtputf8(addresses):
        if not connection.has_extn("smtputf8"):
            names = ", ".join(
                a for a in addresses if not a.rpartition("@")[0].isascii()
            )
            raise ExtensionRefused(
                f"{names}: a non-ASCII local part needs SMTPUTF8 (RFC 6531), "
                f"which {_relay(connection)} does not offer"
            )
        options.append("SMTPUTF8")
    return options


def _relay(connection: smtplib.SMTP) -> str:
    """The relay's host name for an error message."""
    return getattr(connection, "_host", "") or "the relay"
