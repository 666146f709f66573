"""Read one bounce or complaint: who, how bad, and which message of ours.

Standard reports are read with Python's own ``email`` parser, which already
splits a ``message/delivery-status`` part (RFC 3464 2.1) into its
per-message and per-recipient field groups: nothing to hand-parse. Reports
that follow no standard (old Exim, qmail, Yahoo's and Microsoft's older
forms, ...) go to flufl.bounce, a maintained library of detectors for them
(GNU Mailman's), which answers with the failed addresses as temporary or
permanent. Complaints are ARF reports (RFC 5965, ``multipart/report;
report-type=feedback-report``).

flufl.bounce comes with the ``[bounces]`` extra (pip install
"django-mailer-jobs[bounces]"); :func:`require` says so when it is missing
(``process_bounces`` stops on it, and the system check ``mailer.W031`` warns
once a bounce setting is set).
"""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass, field
from email.message import Message as EmailMessage
from email.utils import getaddresses

from django.core.exceptions import ImproperlyConfigured

from mailer.bounces import verp

__all__ = ["HARD", "SOFT", "COMPLAINT", "Failure", "Report", "parse", "require"]

HARD = "hard"
SOFT = "soft"
COMPLAINT = "complaint"

_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")


@dataclass
class Failure:
    """One recipient in a report.

    :ivar address: the recipient as the report names it (``Final-Recipient``,
        ``Original-Rcpt-To`` or flufl.bounce's finding), lower-cased.
    :ivar kind: ``"hard"``, ``"soft"`` or ``"complaint"``.
    :ivar status: RFC 3463 status code (``"5.1.1"``), or ``""``.
    :ivar diagnostic: the remote server's words, or ``""``.
    """

    address: str
    kind: str
    status: str = ""
    diagnostic: str = ""


@dataclass
class Report:
    """What one bounce mail says.

    :ivar failures: recipients that failed (or complained); empty for a
        delay notice, a success DSN or a message nobody can read.
    :ivar message_pk: the pk of our message, from a VERP token whose MAC
        matches (``None``: no token or a forged one).
    :ivar message_id: the Message-ID of the returned original, if quoted.
    :ivar readable: ``False`` when the mail is not a report of any kind we
        or flufl.bounce recognise: it is left in place and reported.
    """

    failures: list[Failure] = field(default_factory=list)
    message_pk: int | None = None
    message_id: str = ""
    readable: bool = True


def require() -> None:
    """Check that flufl.bounce, the ``[bounces]`` extra, imports.

    :raises ImproperlyConfigured: it is not installed; the message names the
        extra to install.
    """
    try:
        import flufl.bounce  # noqa: F401
    except ImportError as error:
        raise ImproperlyConfigured(
            "Reading bounces needs flufl.bounce, which is not installed "
            f'({error}): pip install "django-mailer-jobs[bounces]"'
        ) from error


def parse(data: bytes) -> Report:
    """Parse one bounce mail (RFC 5322 bytes). Never raises for bad input: a
    mail nobody can read comes back with ``readable=False``.

    :raises ImproperlyConfigured: a report in no standard form needs
        flufl.bounce, which is not installed (see :func:`require`).
    """
    try:
        msg = email.message_from_bytes(data, policy=email.policy.compat32)
    except Exception:  # noqa: BLE001 - bad mail is reported, not fatal
        return Report(readable=False)
    report = Report()
    report.message_pk = _verp_pk(msg)
    report.message_id = _original_message_id(msg)
    content_type = msg.get_content_type()
    report_type = (msg.get_param("report-type") or "").lower()
    if content_type == "multipart/report" and report_type == "feedback-report":
        report.failures = _complaint(msg)
    elif content_type == "multipart/report" and report_type == "delivery-status":
        report.failures = _dsn(msg)
    else:
        report.failures = _flufl(msg)
        if not report.failures:
            report.readable = _looks_like_a_report(msg)
    return report


def _parts(msg: EmailMessage, content_type: str) -> list[EmailMessage]:
    return [part for part in msg.walk() if part.get_content_type() == content_type]


def _address(value: str | None) -> str:
    """``rfc822; Someone@Example.org`` -> ``someone@example.org``."""
    value = (value or "").strip()
    if ";" in value:
        value = value.split(";", 1)[1]
    return value.strip().strip("<>").strip().lower()


def _dsn(msg: EmailMessage) -> list[Failure]:
    failures = []
    for part in _parts(msg, "message/delivery-status"):
        payload = part.get_payload()
        # The first group is per-message (Reporting-MTA ...), the rest one
        # per recipient (RFC 3464 2.2, 2.3).
        groups = payload if isinstance(payload, list) else []
        for group in groups:
            recipient = _address(
                group.get("Final-Recipient") or group.get("Original-Recipient")
            )
            action = (group.get("Action") or "").strip().lower()
            if not recipient or action not in ("failed", "delayed"):
                continue
            status_match = _STATUS.search(group.get("Status") or "")
            status = status_match.group(0) if status_match else ""
            # A "delayed" action is the MTA still trying (RFC 3464 2.3.3):
            # soft whatever its status says.
            kind = HARD if status.startswith("5") and action == "failed" else SOFT
            diagnostic = " ".join((group.get("Diagnostic-Code") or "").split())
            failures.append(Failure(recipient, kind, status, diagnostic[:500]))
    if not failures:
        # multipart/report with a broken or empty status part: the
        # detectors still find most of them.
        failures = _flufl(msg)
    return failures


def _complaint(msg: EmailMessage) -> list[Failure]:
    addresses: list[str] = []
    feedback_type = ""
    for part in _parts(msg, "message/feedback-report"):
        groups = part.get_payload()
        fields = groups[0] if isinstance(groups, list) and groups else None
        if fields is None:
            # Some providers send the fields as text/plain-like payloads.
            fields = email.message_from_string(str(part.get_payload()))
        feedback_type = (fields.get("Feedback-Type") or "").strip().lower()
        for value in fields.get_all("Original-Rcpt-To") or []:
            addresses.append(_address(value))
    addresses = [a for a in addresses if "@" in a]
    if not addresses:
        # Providers redact Original-Rcpt-To; the original's To remains
        # (Yahoo, Outlook's JMRP), unless the VERP token alone names it.
        original = _original(msg)
        if original is not None:
            addresses = [a.lower() for _, a in getaddresses(original.get_all("To", []))]
    addresses = [a for a in addresses if "@" in a] or [""]
    # An empty address: redacted everywhere; the VERP token alone names the
    # reader (see ``process.record``).
    return [
        Failure(address, COMPLAINT, "", feedback_type or "abuse")
        for address in dict.fromkeys(addresses)
    ]


def _flufl(msg: EmailMessage) -> list[Failure]:
    require()
    from flufl.bounce import all_failures

    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # noqa: BLE001 - a detector's bug must not stop the run
        return []
    failures = [Failure(_decode(a), HARD) for a in sorted(permanent)]
    failures += [Failure(_decode(a), SOFT) for a in sorted(temporary - permanent)]
    return [f for f in failures if "@" in f.address]


def _decode(address: bytes | str) -> str:
    if isinstance(address, bytes):
        address = address.decode("utf-8", "replace")
    return address.strip().strip("<>").lower()


def _original(msg: EmailMessage) -> EmailMessage | None:
    for content_type in ("message/rfc822", "text/rfc822-headers"):
        for part in _parts(msg, content_type):
            payload = part.get_payload()
            if isinstance(payload, list) and payload:
                return payload[0]
            if isinstance(payload, str):
                return email.message_from_string(payload)
    return None


def _original_message_id(msg: EmailMessage) -> str:
    original = _original(msg)
    return (original.get("Message-ID") or "").strip() if original else ""


def _verp_pk(msg: EmailMessage) -> int | None:
    """The first valid VERP token among the places a bounce carries it: the
    bounce's own envelope recipient (Delivered-To, X-Original-To, To), the
    report's X-Postfix-Sender / Original-Envelope-Id, and the returned
    original's Return-Path."""
    candidates: list[str] = []
    for name in ("Delivered-To", "X-Original-To", "To", "Envelope-To"):
        candidates += [a for _, a in getaddresses(msg.get_all(name, []))]
    for part in _parts(msg, "message/delivery-status"):
        for group in part.get_payload() or []:
            candidates.append(_address(group.get("X-Postfix-Sender")))
    original = _original(msg)
    if original is not None:
        candidates += [a for _, a in getaddresses(original.get_all("Return-Path", []))]
    for candidate in candidates:
        pk = verp.message_pk_from(candidate)
        if pk is not None:
            return pk
    return None


def _looks_like_a_report(msg: EmailMessage) -> bool:
    """A mail with no failures is readable when it is a report of some kind
    (a delay notice, a success DSN, an auto-reply), so it is processed and
    filed; anything else is left in place for a person."""
    return msg.get_content_type() == "multipart/report" or bool(
        (msg.get("Auto-Submitted") or "").lower().startswith("auto-")
    )
