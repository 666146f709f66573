"""Signed one-click unsubscribe links (RFC 8058).

The token is ``django.core.signing`` over the address and the job, with a
salt of its own: it cannot be forged without ``SECRET_KEY``, nor edited to
unsubscribe somebody else. It does not expire: a reader may click the link in
a months-old email, and RFC 8058 expects the link to keep working.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings as django_settings
from django.core import signing
from django.urls import NoReverseMatch, reverse
from django.utils.encoding import force_bytes, iri_to_uri, punycode

from mailer.addresses import envelope_address, normalize
from mailer.conf import conf
from mailer.exceptions import InvalidAddress

__all__ = [
    "SALT",
    "TokenSigner",
    "UnsubscribeLinks",
    "UnsubscribeRequest",
    "ascii_url",
    "make_token",
    "read_token",
    "site_domain",
    "unsubscribe_path",
]

logger = logging.getLogger(__name__)

#: The ``django.core.signing`` salt of unsubscribe tokens; changing it voids
#: every link in mail already sent.
SALT = "mailer.unsubscribe"
_TOKEN_MARK = "TOKEN-PLACEHOLDER"


@dataclass(frozen=True)
class UnsubscribeRequest:
    """What a valid token says: the address (normalized, as
    ``mailer.addresses.normalize`` gives it) and the job it came from
    (``None`` for single mail)."""

    address: str
    job_id: int | None


def _signer() -> signing.Signer:
    return signing.Signer(salt=SALT)


class TokenSigner:
    """``signing.Signer(salt=SALT).sign_object`` for the send loop: the same
    token, character for character (``read_token`` verifies it with Django's
    own ``Signer``), for a fraction of its cost. Django derives the HMAC key
    (``salted_hmac``: SHA-256 of salt and ``SECRET_KEY``) and builds a new HMAC
    for every token; here the keyed HMAC is made once and copied per token.
    Same strength: HMAC-SHA256 under the same derived key.

    Django's formats followed: ``JSONSerializer`` (compact JSON), ``b64_encode``
    (URL-safe base64 without padding), ``Signer.sign`` (``value:signature``).
    """

    def __init__(self) -> None:
        signer = _signer()
        if signer.algorithm != "sha256":  # pragma: no cover - Django's default
            raise ValueError(f"unexpected signing algorithm {signer.algorithm}")
        self.sep = signer.sep
        # django.utils.crypto.salted_hmac(signer.salt + "signer", value, key).
        key_salt = (signer.salt + "signer").encode()
        key = hashlib.sha256(key_salt + force_bytes(signer.key)).digest()
        self.mac = hmac.new(key, digestmod=hashlib.sha256)

    #: ``json.dumps(obj, separators=(",", ":"))`` without a new encoder per
    #: call (``dumps`` makes one whenever an argument is not the default).
    _json = json.JSONEncoder(separators=(",", ":")).encode

    def sign_object(self, obj: object) -> str:
        """The token ``signing.Signer(salt=SALT).sign_object(obj)`` would give
        for a JSON-serializable ``obj`` of ASCII or Latin-1 text."""
        data = self._json(obj).encode("latin-1")
        value = base64.urlsafe_b64encode(data).rstrip(b"=").decode()
        mac = self.mac.copy()
        mac.update(value.encode())
        signature = base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()
        return f"{value}{self.sep}{signature}"


def make_token(
    address: str, job_id: int | None = None, *, signer: signing.Signer | None = None
) -> str:
    """The unsubscribe token for ``address`` (normalized first) and the job
    ``job_id`` (``None`` for single mail): URL-safe text, signed with
    ``SECRET_KEY`` under :data:`SALT` by Django's cryptographic signing
    (https://docs.djangoproject.com/en/stable/topics/signing/). It never
    expires (RFC 8058 links must keep working in old mail); rotating
    ``SECRET_KEY`` without ``SECRET_KEY_FALLBACKS`` voids it.

    ``signer``: a :class:`TokenSigner` (or ``Signer``) to reuse across many
    tokens, as the send loop does; the token is the same.
    """
    return (signer or _signer()).sign_object([normalize(address), job_id])


def read_token(token: str) -> UnsubscribeRequest:
    """Verify ``token`` (from :func:`make_token`) and return what it says.

    :raises django.core.signing.BadSignature: the token is forged, damaged,
        signed with another ``SECRET_KEY`` (and none of
        ``SECRET_KEY_FALLBACKS``) or does not hold an address and a job id.
    """
    value = _signer().unsign_object(token)
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not isinstance(value[0], str)
        or not (value[1] is None or isinstance(value[1], int))
    ):
        raise signing.BadSignature("malformed unsubscribe token")
    return UnsubscribeRequest(address=value[0], job_id=value[1])


class UnsubscribeLinks:
    """Builds links fast: the URL is reversed once, the token filled per
    recipient (``reverse()`` per message would dominate the cost)."""

    def __init__(self) -> None:
        self.base = ascii_url(conf.MAILER_SITE_URL) if conf.MAILER_SITE_URL else None
        self.mailto = _ascii_mailto(conf.MAILER_UNSUBSCRIBE_MAILTO)
        self.signer = TokenSigner()
        path = None
        if self.base:
            path, problem = unsubscribe_path()
            if problem:
                # Mail still goes out, without the link: a password reset
                # must not wait for a URL setting. ``mailer.W002`` says the
                # same at ``manage.py check``.
                logger.warning(
                    "job mail goes out without unsubscribe links: %s", problem
                )
        self.prefix, self.suffix = (
            path.split(_TOKEN_MARK) if path and self.base else (None, None)
        )

    @property
    def enabled(self) -> bool:
        """True when links can be built: ``MAILER_SITE_URL`` is set and the
        unsubscribe view's URL reverses."""
        return self.prefix is not None

    def url(self, address: str, job_id: int | None) -> str:
        """The absolute unsubscribe URL for ``address`` and ``job_id``, or
        ``""`` when links are not :attr:`enabled`."""
        if not self.enabled:
            return ""
        token = make_token(address, job_id, signer=self.signer)
        return f"{self.base}{self.prefix}{token}{self.suffix}"

    def headers(self, url: str) -> dict[str, str]:
        """``List-Unsubscribe`` for one recipient (the ``-Post`` companion is
        static and lives in the job's template)."""
        targets = []
        if url:
            targets.append(f"<{url}>")
        if self.mailto:
            targets.append(f"<mailto:{self.mailto}?subject=unsubscribe>")
        return {"List-Unsubscribe": ", ".join(targets)} if targets else {}


def reverse_here(
    viewname: str, args: Sequence[Any] = (), *, what: str, urls: str = "mailer.urls"
) -> tuple[str | None, str | None]:
    """``(path, None)`` from Django's ``reverse(viewname, args=args)``, or
    ``(None, why)`` when this project cannot reverse it: no ``ROOT_URLCONF``
    (a project that serves no pages, e.g. a worker-only settings module), or
    ``urls`` not included under the view's namespace (``NoReverseMatch``).

    ``what`` names the URL in the reason ("the unsubscribe view's URL").
    Never raises for a missing URLconf: links in mail are optional, the mail
    is not (``mailer.W002`` and ``mailer_subscriptions.E001`` report the
    reason at ``manage.py check``)."""
    if not getattr(django_settings, "ROOT_URLCONF", None):
        return None, f"settings have no ROOT_URLCONF, so {what} cannot be reversed"
    try:
        return reverse(viewname, args=list(args)), None
    except NoReverseMatch:
        return None, (
            f"the URL {viewname!r} cannot be reversed: "
            f"include({urls!r}) is missing from ROOT_URLCONF"
        )


def unsubscribe_path() -> tuple[str | None, str | None]:
    """The unsubscribe view's path with a placeholder token, or ``None`` and
    why it cannot be had (:func:`reverse_here`)."""
    return reverse_here(
        "mailer:unsubscribe", [_TOKEN_MARK], what="the unsubscribe view's URL"
    )


def site_domain() -> str | None:
    """The domain of ``List-Id`` and ``Message-ID`` in job mail, in the ASCII
    form headers need (an internationalised name in punycode, RFC 5890)."""
    domain = conf.MAILER_LIST_ID_DOMAIN or (
        urlsplit(conf.MAILER_SITE_URL).hostname if conf.MAILER_SITE_URL else None
    )
    if not domain or domain.isascii():
        return domain
    try:
        return punycode(domain)
    except UnicodeError:
        logger.error("MAILER_LIST_ID_DOMAIN / MAILER_SITE_URL: bad domain %r", domain)
        return None


def ascii_url(url: str) -> str:
    """``url`` as a URI (RFC 3986): an internationalised host in punycode, any
    other non-ASCII character percent-encoded (``iri_to_uri``). Header fields
    such as ``List-Unsubscribe`` (RFC 2369) carry URIs, never raw Unicode."""
    if url.isascii():
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host and not host.isascii():
        netloc = parts.netloc
        userinfo, at, _hostport = netloc.rpartition("@")
        port = f":{parts.port}" if parts.port else ""
        netloc = f"{userinfo}{at}{punycode(host)}{port}"
        url = urlunsplit(parts._replace(netloc=netloc))
    return iri_to_uri(url)


def _ascii_mailto(address: str | None) -> str | None:
    """``MAILER_UNSUBSCRIBE_MAILTO`` as the header writes it: the bare address
    with an internationalised domain in punycode. An invalid one is logged
    and left out of the header rather than stopping all sending."""
    if not address:
        return None
    try:
        return envelope_address(address)
    except InvalidAddress as error:
        logger.error(
            "MAILER_UNSUBSCRIBE_MAILTO left out of List-Unsubscribe: %s", error
        )
        return None
