"""DKIM signing at send time (RFC 6376), with dkimpy.

Each email is signed after personalisation, right before it goes on the
wire, so the signature covers the bytes the reader gets. The key (RSA 2048+
as ``rsa-sha256``, or Ed25519 as ``ed25519-sha256``, RFC 8463) is read once
per process and file modification time. Signed headers follow current
practice (M3AAWG, RFC 8058 for the unsubscribe pair): From, To, Subject,
Date, Message-ID, List-Unsubscribe, List-Unsubscribe-Post, of those present;
From is also "oversigned" (named once more than present) so nobody can add
a second From under the signature.

dkimpy and cryptography come with the ``[dkim]`` extra (pip install
"django-mailer-jobs[dkim]"); without them, signing and the system check say
so (``ImproperlyConfigured``, ``mailer.E030``) instead of failing on the
import.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from email.parser import BytesHeaderParser

from django.core.exceptions import ImproperlyConfigured

from mailer.conf import conf

__all__ = [
    "DkimKeyError",
    "SigningKey",
    "check_settings",
    "enabled",
    "load_key",
    "public_txt",
    "require",
    "sign",
]

SIGNED_HEADERS = (
    b"From",
    b"To",
    b"Subject",
    b"Date",
    b"Message-ID",
    b"MIME-Version",
    b"Content-Type",
    b"List-Unsubscribe",
    b"List-Unsubscribe-Post",
)


class DkimKeyError(ValueError):
    """The DKIM key file is missing, unreadable or not a usable key."""


@dataclass(frozen=True)
class SigningKey:
    """A loaded key: the PEM bytes dkimpy takes, and its algorithm."""

    pem: bytes
    algorithm: bytes  # b"rsa-sha256" or b"ed25519-sha256"
    bits: int


_cache: dict[tuple[str, float], SigningKey] = {}


def require() -> None:
    """Check that the ``[dkim]`` extra's libraries import.

    :raises ImproperlyConfigured: dkimpy or cryptography is not installed;
        the message names the extra to install.
    """
    try:
        import cryptography  # noqa: F401
        import dkim  # noqa: F401
    except ImportError as error:
        raise ImproperlyConfigured(
            "DKIM signing (MAILER_DKIM_KEY_FILE) needs dkimpy and cryptography, "
            f"which are not installed ({error}): "
            'pip install "django-mailer-jobs[dkim]"'
        ) from error


def load_key(path: str) -> SigningKey:
    """Load and check a PEM private key.

    :raises DkimKeyError: missing file, not a private key, RSA under 2048 bits
        (RFC 8301 3.2 requires 1024 and recommends 2048; mailbox providers
        want 2048), or another key type.
    :raises ImproperlyConfigured: the ``[dkim]`` extra is not installed.
    """
    require()
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    try:
        mtime = os.stat(path).st_mtime
    except OSError as error:
        raise DkimKeyError(f"cannot read {path}: {error.strerror}") from error
    cached = _cache.get((path, mtime))
    if cached is not None:
        return cached
    with open(path, "rb") as file:
        pem = file.read()
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as error:
        raise DkimKeyError(f"{path} is no unencrypted PEM private key") from error
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < 2048:
            raise DkimKeyError(f"{path}: RSA key of {key.key_size} bits, need 2048+")
        # dkimpy reads RSA keys as PKCS#1 ("BEGIN RSA PRIVATE KEY").
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        signing = SigningKey(pem, b"rsa-sha256", key.key_size)
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        # dkimpy takes Ed25519 keys as the base64 of the 32 raw bytes.
        import base64

        raw = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        signing = SigningKey(base64.b64encode(raw), b"ed25519-sha256", 256)
    else:
        raise DkimKeyError(f"{path}: neither an RSA nor an Ed25519 key")
    _cache.clear()
    _cache[(path, mtime)] = signing
    return signing


def enabled() -> bool:
    """True when ``MAILER_DKIM_KEY_FILE`` is set: every message is signed."""
    return bool(conf.MAILER_DKIM_KEY_FILE)


def sign(data: bytes) -> bytes:
    """``data`` with a DKIM-Signature header on top (relaxed/relaxed).

    :raises DkimKeyError: the key cannot be loaded, or no
        ``MAILER_DKIM_DOMAIN`` (the engine stops its run on either: every
        message would fail alike).
    :raises ImproperlyConfigured: the ``[dkim]`` extra is not installed (the
        engine stops its run on it too).
    """
    require()
    import dkim

    key = load_key(conf.MAILER_DKIM_KEY_FILE)
    domain = conf.MAILER_DKIM_DOMAIN
    if not domain:
        raise DkimKeyError("MAILER_DKIM_DOMAIN is not set")
    present = {
        name.lower().encode()
        for name in BytesHeaderParser().parsebytes(data, headersonly=True).keys()
    }
    include = [h for h in SIGNED_HEADERS if h.lower() in present]
    include.append(b"From")
    linesep = b"\r\n" if b"\r\n" in data[:2000] else b"\n"
    header = dkim.sign(
        data,
        conf.MAILER_DKIM_SELECTOR.encode(),
        domain.encode(),
        key.pem,
        canonicalize=(b"relaxed", b"relaxed"),
        signature_algorithm=key.algorithm,
        include_headers=include,
        linesep=linesep,
    )
    return header + data


def public_txt(path: str) -> bytes:
    """The DNS TXT record (``v=DKIM1; k=...; p=...``) for the key at
    ``path``, for publishing at ``<selector>._domainkey.<domain>``.

    :raises ImproperlyConfigured: the ``[dkim]`` extra is not installed.
    """
    require()
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    with open(path, "rb") as file:
        key = serialization.load_pem_private_key(file.read(), password=None)
    public = key.public_key()
    if isinstance(public, ed25519.Ed25519PublicKey):
        raw = public.public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return b"v=DKIM1; k=ed25519; p=" + base64.b64encode(raw)
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)


_SELECTOR = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")


def check_settings() -> list[str]:
    """Problems with the DKIM settings, as sentences (empty: fine or off)."""
    if not conf.MAILER_DKIM_KEY_FILE:
        return []
    problems = []
    try:
        # The key is read with cryptography: without the extra, that it is
        # missing is the one thing to say about the key.
        load_key(conf.MAILER_DKIM_KEY_FILE)
    except ImproperlyConfigured as error:
        problems.append(f"{error}.")
    except DkimKeyError as error:
        problems.append(f"MAILER_DKIM_KEY_FILE: {error}.")
    if not conf.MAILER_DKIM_DOMAIN:
        problems.append("MAILER_DKIM_DOMAIN is not set.")
    if not _SELECTOR.fullmatch(conf.MAILER_DKIM_SELECTOR or ""):
        problems.append(
            f"MAILER_DKIM_SELECTOR {conf.MAILER_DKIM_SELECTOR!r} is invalid."
        )
    return problems
