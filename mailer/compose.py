"""Bytes on the wire for a queued message.

A single email was built by Django when it was queued (``queue.py`` stores the
bytes ``EmailMessage.message()`` produced); sending it costs nothing more.

A job's email is built here, per recipient, from a ``JobTemplate`` prepared
once per job: the static headers and MIME skeleton are bytes made once, and
each recipient's message is those bytes plus a few per-recipient header lines
and the bodies with the placeholders filled in (see ``personalize.py``).
Building a full Django ``EmailMultiAlternatives`` per recipient costs about
1 ms of CPU, several times what sending it to a local server costs; this path
costs tens of microseconds. ``tests/test_compose.py`` checks that a parser
reads back exactly what Django would have produced.

Transfer encoding: each body part goes out as 7bit (ASCII) or 8bit (UTF-8)
when no line exceeds RFC 5322's 998 octets, as Django itself does; a part with
longer lines is quoted-printable, encoded after the substitution so no
placeholder is ever split by an encoder.
"""

from __future__ import annotations

import binascii
import secrets
from collections.abc import Mapping
from email.header import Header
from email.utils import formataddr, formatdate, getaddresses, make_msgid
from typing import Any

from mailer.addresses import envelope_address
from mailer.exceptions import HeaderInjection
from mailer.personalize import Personalizer

CRLF = "\r\n"
MAX_LINE = 998
#: Room left on a template's longest line for substituted values; a value
#: longer than this triggers an exact line-length check for that message.
VALUE_SLACK = 300


def header_line(name: str, value: str) -> bytes:
    """``Name: value`` CRLF, RFC 2047-encoded when not plain ASCII."""
    if "\n" in value or "\r" in value:
        raise HeaderInjection(f"Header {name!r} contains a line break: {value!r}")
    if value.isascii() and len(name) + len(value) < 900:
        return f"{name}: {value}{CRLF}".encode("ascii")
    encoded = Header(value, "utf-8", header_name=name).encode(linesep=CRLF)
    return f"{name}: {encoded}{CRLF}".encode("ascii")


def address_header_value(address: str) -> str:
    """One address for a From/To header: display name RFC 2047-encoded if it
    needs to be, domain in punycode."""
    (name, _spec), *_ = getaddresses([address])
    return formataddr((name, envelope_address(address)), charset="utf-8")


def normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", CRLF)


def _max_line(text: str) -> int:
    return max((len(line.encode("utf-8")) for line in text.split(CRLF)), default=0)


class _Part:
    __slots__ = ("personalizer", "content_type", "template_needs_qp")

    def __init__(self, text: str, content_type: str, *, escape: bool) -> None:
        text = normalize_newlines(text)
        if not text.endswith(CRLF):
            text += CRLF
        self.personalizer = Personalizer(text, escape=escape)
        self.content_type = content_type
        self.template_needs_qp = _max_line(text) > MAX_LINE - VALUE_SLACK

    def encode(self, values: Mapping[str, Any], long_values: bool) -> bytes:
        text = self.personalizer.render(values)
        data = text.encode("utf-8")
        if self.template_needs_qp or (long_values and _max_line(text) > MAX_LINE):
            cte = "quoted-printable"
            data = binascii.b2a_qp(data, istext=True)
        elif data.isascii():
            cte = "7bit"
        else:
            cte = "8bit"
        head = (
            f'Content-Type: {self.content_type}; charset="utf-8"{CRLF}'
            f"Content-Transfer-Encoding: {cte}{CRLF}{CRLF}"
        )
        return head.encode("ascii") + data


class JobTemplate:
    """Everything about a job's email that is the same for every recipient."""

    def __init__(
        self,
        *,
        subject: str,
        from_email: str,
        body_text: str,
        body_html: str = "",
        headers: Mapping[str, str] | None = None,
        message_id_domain: str | None = None,
    ) -> None:
        self.envelope_from = envelope_address(from_email)
        self.subject = Personalizer(subject)
        self.static_subject = (
            header_line("Subject", subject) if self.subject.is_static else None
        )
        self.message_id_domain = message_id_domain
        self.parts = [_Part(body_text, "text/plain", escape=False)]
        if body_html:
            self.parts.append(_Part(body_html, "text/html", escape=True))
        static = [
            header_line("From", address_header_value(from_email)),
            b"MIME-Version: 1.0\r\n",
        ]
        for name, value in (headers or {}).items():
            static.append(header_line(name, str(value)))
        if len(self.parts) > 1:
            self.boundary = f"===============mj{secrets.token_hex(10)}=="
            static.append(
                header_line(
                    "Content-Type",
                    f'multipart/alternative; boundary="{self.boundary}"',
                )
            )
        else:
            self.boundary = None
        self.static_headers = b"".join(static)

    def render(
        self,
        to_address: str,
        values: Mapping[str, Any],
        *,
        extra_headers: Mapping[str, str] | None = None,
        message_id: str | None = None,
    ) -> tuple[bytes, str]:
        """One recipient's message: the bytes and its ``Message-ID``.

        ``to_address`` must be a valid bare address, with an internationalised
        domain already in punycode (see ``addresses.envelope_address``).
        ``message_id`` (``<...@...>``) is the email's fixed id, the same on
        every attempt; a new one is made when it is not given."""
        message_id = message_id or make_msgid(domain=self.message_id_domain)
        # A per-recipient value may hold line breaks (a postal address). In the
        # bodies they must become CRLF, as Django would write them: a bare LF
        # or CR on the wire is refused by many servers (SMTP smuggling
        # defences) and is not what a parser reads back. Rarely needed, so
        # only then is the mapping copied.
        if any(
            isinstance(v, str) and ("\n" in v or "\r" in v) for v in values.values()
        ):
            values = {
                k: normalize_newlines(v) if isinstance(v, str) else v
                for k, v in values.items()
            }
        # Header values from per-recipient data: line breaks fold to spaces.
        name = " ".join(str(values.get("name") or "").split())
        lines = [
            self.static_headers,
            header_line("To", formataddr((name, to_address))),
            self.static_subject
            or header_line("Subject", " ".join(self.subject.render(values).split())),
            header_line("Date", formatdate()),
            header_line("Message-ID", message_id),
        ]
        for header, value in (extra_headers or {}).items():
            lines.append(header_line(header, value))
        long_values = any(
            isinstance(v, str) and len(v) > VALUE_SLACK for v in values.values()
        )
        if self.boundary is None:
            lines.append(self.parts[0].encode(values, long_values))
            return b"".join(lines), message_id
        lines.append(b"\r\n")
        delimiter = f"--{self.boundary}{CRLF}".encode("ascii")
        for part in self.parts:
            lines.append(delimiter)
            lines.append(part.encode(values, long_values))
            # The CRLF before a delimiter belongs to the delimiter (RFC 2046),
            # so the part's own final line break needs one more.
            lines.append(b"\r\n")
        lines.append(f"--{self.boundary}--{CRLF}".encode("ascii"))
        return b"".join(lines), message_id
