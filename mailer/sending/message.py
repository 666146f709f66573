"""An email's two forms: the stored bytes, and Django's ``EmailMessage``.

Single mail is stored as the RFC 5322 bytes Django's SMTP backend would put
on the wire (:func:`serialize`); the SMTP path sends those bytes as they are.
A backend that takes ``EmailMessage`` objects (an ESP through django-anymail,
console, locmem, ...) gets :class:`PreparedEmail`, an ``EmailMessage`` rebuilt
from the bytes so that the backend sees what it would have seen without the
queue: the same To, Cc and Bcc, text and HTML bodies, attachments with their
names and types, inline parts (``cid:`` images) inline with their
``Content-ID``.
"""

from __future__ import annotations

import copy
import email
import email.policy
from collections.abc import Iterator, Sequence
from email import encoders
from email.message import EmailMessage as StdlibEmailMessage
from email.message import Message as StdlibMessage
from email.mime.base import MIMEBase
from typing import Any

from django.core import mail

from mailer.addresses import normalize
from mailer.compat import MODERN_EMAIL_API

__all__ = ["PreparedEmail", "serialize"]


def serialize(email_message: mail.EmailMessage) -> tuple[bytes, str]:
    """The RFC 5322 bytes Django's SMTP backend would put on the wire, and the
    message's ``Message-ID``. Raises what ``EmailMessage.message()`` raises
    (``ValueError`` for an unencodable header, ...)."""
    if MODERN_EMAIL_API:
        message = email_message.message(policy=email.policy.SMTP)
        data = message.as_bytes()
    else:
        message = email_message.message()
        data = message.as_bytes(linesep="\r\n")
    return data, str(message.get("Message-ID", ""))


class PreparedEmail(mail.EmailMultiAlternatives):
    """An already-built message, for backends that take ``EmailMessage`` objects.

    ``message()`` returns the exact stored message, so backends that serialise
    (console, file, SMTP subclasses) send what was queued; the structured
    attributes (subject, body, alternatives, attachments, headers) are filled
    from it for backends that call an API (django-anymail's ESPs).

    To and Cc are the headers' addresses, as given (display names included),
    among those still in the envelope (a Cc on the don't-send list is left
    out there, so here too). Bcc is the rest of the envelope: compared by
    addr-spec (``addresses.normalize``), so ``Ann <ann@example.com>`` in To
    is not also a Bcc. MIME parts are read as Django writes them (RFC 2046,
    RFC 2387 ``multipart/related`` for inline images):

    - the first ``text/plain`` body part is ``body``, other text body parts
      alternatives (``text/html``);
    - a part with ``Content-Disposition: attachment``, or a filename or no
      ``Content-ID``, is an attachment ``(filename, content, type)``; an
      attached email (``message/rfc822``) stays one attachment;
    - a part with a ``Content-ID`` (or ``Content-Disposition: inline``) that
      is not a body, and every part with a ``Content-ID`` inside
      ``multipart/related`` but its root, stays inline with its
      ``Content-ID``: a MIME part attachment, as Django documents for inline
      images.
    """

    _structural = {
        "subject",
        "from",
        "to",
        "cc",
        "bcc",
        "reply-to",
        "content-type",
        "content-transfer-encoding",
        "mime-version",
    }

    def __init__(self, data: bytes, envelope_from: str, recipients: Sequence[str]):
        parsed = email.message_from_bytes(data, policy=email.policy.default)
        envelope = {normalize(r) for r in recipients}
        to = [a for a in _addresses(parsed, "To") if normalize(a) in envelope]
        cc = [a for a in _addresses(parsed, "Cc") if normalize(a) in envelope]
        shown = {normalize(a) for a in to + cc}
        bcc: list[str] = []
        for recipient in recipients:
            if normalize(recipient) not in shown:
                shown.add(normalize(recipient))
                bcc.append(recipient)
        headers = {
            name: str(value)
            for name, value in parsed.items()
            if name.lower() not in self._structural
        }
        super().__init__(
            subject=str(parsed.get("Subject", "")),
            body="",
            from_email=str(parsed.get("From", envelope_from)),
            to=to,
            cc=cc,
            bcc=bcc,
            reply_to=_addresses(parsed, "Reply-To"),
            headers=headers,
        )
        self._parsed = parsed
        self._envelope = list(recipients)
        has_body = False
        for part, related in _leaves(parsed):
            kind = _kind(part, related)
            if kind == "body":
                content = _text(part)
                if part.get_content_type() == "text/plain" and not has_body:
                    self.body, has_body = content, True
                else:
                    self.attach_alternative(content, part.get_content_type())
            elif kind == "inline":
                self.attach(_inline_part(part))
            else:
                content = part.get_content()
                if isinstance(content, str):
                    content = _text(part)
                self.attach(part.get_filename(), content, part.get_content_type())

    def message(self, **kwargs: Any) -> StdlibMessage:
        """The stored message itself, parsed once (Django's
        ``EmailMessage.message()``, which backends that serialise call)."""
        return self._parsed

    def recipients(self) -> list[str]:
        """The envelope recipients (RFC 5321 ``RCPT TO``), as queued."""
        return self._envelope


def _addresses(parsed: StdlibMessage, header: str) -> list[str]:
    value = parsed.get(header)
    if not value:
        return []
    return [str(address) for address in value.addresses]


def _leaves(
    part: StdlibEmailMessage, related: bool = False
) -> Iterator[tuple[StdlibEmailMessage, bool]]:
    """The parts that hold content, in order, each with whether it is a
    related part of a ``multipart/related`` (not its root, RFC 2387), without
    descending into an attached email (``message/rfc822`` is one leaf)."""
    if part.get_content_maintype() == "multipart":
        is_related = part.get_content_subtype() == "related"
        for index, sub in enumerate(part.iter_parts()):
            yield from _leaves(sub, is_related and index > 0)
    else:
        yield part, related


def _kind(part: StdlibEmailMessage, related: bool) -> str:
    """ "body", "inline" or "attachment" (see :class:`PreparedEmail`)."""
    disposition = part.get_content_disposition()
    has_cid = part["Content-ID"] is not None
    if related and has_cid:
        # Shown by the HTML that refers to it, whatever its disposition
        # says (Python's add_related() and some mail clients write
        # "attachment" there).
        return "inline"
    if disposition == "attachment":
        return "attachment"
    if (
        part.get_content_maintype() == "text"
        and not has_cid
        and disposition is None
        and not part.get_filename()
    ):
        return "body"
    if has_cid or disposition == "inline":
        return "inline"
    return "attachment"


def _text(part: StdlibEmailMessage) -> str:
    # Text came off the wire with CRLF line endings; an API-based backend
    # expects Python's own (as Django's EmailMessage holds them).
    return part.get_content().replace("\r\n", "\n")


def _inline_part(part: StdlibEmailMessage) -> StdlibMessage:
    """The inline part as an attachment object this Django's ``attach()``
    takes: a copy of the parsed ``MIMEPart`` on Django 6.0+, a ``MIMEBase``
    on 5.2; same type, content, filename and ``Content-ID``, and
    ``Content-Disposition: inline`` (what ESP backends look for)."""
    if MODERN_EMAIL_API:
        # A copy: message() still returns the stored message unchanged.
        inline = copy.deepcopy(part)
    else:
        inline = MIMEBase(part.get_content_maintype(), part.get_content_subtype())
        inline.set_payload(part.get_payload(decode=True))
        encoders.encode_base64(inline)
        # The original Content-Type keeps its parameters (charset, name).
        inline.replace_header("Content-Type", str(part["Content-Type"]))
        for name in ("Content-ID", "Content-Description"):
            if part[name] is not None:
                inline[name] = str(part[name])
    filename = part.get_filename()
    del inline["Content-Disposition"]
    inline["Content-Disposition"] = "inline"
    if filename:
        inline.set_param("filename", filename, header="Content-Disposition")
    return inline
