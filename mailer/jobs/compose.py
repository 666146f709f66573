"""Bytes on the wire for a queued message.

A single email was built by Django when it was queued (``queue.py`` stores the
bytes ``EmailMessage.message()`` produced); sending it costs nothing more.

A job's email is built here, per recipient, from a ``JobTemplate`` prepared
once per job: the static headers and MIME skeleton are bytes made once, and
each recipient's message is those bytes plus a few per-recipient header lines
and the bodies with the placeholders filled in (see ``personalize.py``).
Building a full Django ``EmailMultiAlternatives`` per recipient costs about
1 ms of CPU, several times what sending it to a local server costs; this path
costs tens of microseconds. ``tests/jobs/test_compose.py`` checks that a parser
reads back exactly what Django would have produced.

Transfer encoding: each body part goes out as 7bit (ASCII) or 8bit (UTF-8)
when no line exceeds RFC 5322's 998 octets (section 2.1.1), as Django itself
does; a part with longer lines is quoted-printable, encoded after the
substitution so no placeholder is ever split by an encoder. Whether a line can
exceed 998 octets is decided per part and per recipient from a bound known at
template time (each line's fixed octets and its number of placeholders) and
the length of the recipient's longest value: any mix of values, repeated
placeholders and HTML escaping is covered, and only a message whose bound is
over the limit pays for measuring its rendered lines.

Address headers (From, To, Reply-To, Cc, Sender, Resent-*, ...) are written
as Django writes them for single mail (``sanitize_address``): the display name
RFC 2047-encoded and folded when it is not short printable ASCII, the
``<addr-spec>`` intact, an internationalised domain in punycode.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from collections.abc import Iterable, Mapping
from email.charset import Charset
from email.header import Header
from email.utils import formataddr, formatdate, getaddresses, make_msgid
from typing import Any

from django.utils.encoding import punycode

from mailer.addresses import envelope_address
from mailer.door import check_header
from mailer.exceptions import InvalidAddress
from mailer.jobs.personalize import MAX_VARIANTS, Personalizer

__all__ = [
    "ADDRESS_HEADERS",
    "JobTemplate",
    "mailboxes",
    "normalize_newlines",
    "static_header",
]

CRLF = "\r\n"
#: RFC 5322 section 2.1.1: a line is at most 998 octets, CRLF excluded.
MAX_LINE = 998
#: RFC 5322 section 2.1.1: a line SHOULD be at most 78 characters; folded
#: address headers keep to it.
FOLD_AT = 78
#: Most octets one character of a value can become: 4 in UTF-8, 6 once
#: HTML-escaped (``"`` is ``&quot;``, ``'`` is ``&#x27;``).
TEXT_GROWTH = 4
HTML_GROWTH = 6

#: Header fields whose value is a list of mailboxes: Django's own set
#: (``django.core.mail.message.ADDRESS_HEADERS``) and the other registered
#: fields that carry addresses (RFC 8098 ``Disposition-Notification-To``,
#: ``Mail-Followup-To`` ...). Their values are parsed and rewritten, never
#: RFC 2047-encoded as a whole (which hides the address from every reader).
ADDRESS_HEADERS = frozenset(
    {
        "from",
        "sender",
        "reply-to",
        "to",
        "cc",
        "bcc",
        "resent-from",
        "resent-sender",
        "resent-to",
        "resent-cc",
        "resent-bcc",
        "disposition-notification-to",
        "return-receipt-to",
        "mail-followup-to",
        "mail-reply-to",
        "errors-to",
    }
)

_UTF8 = Charset("utf-8")


def header_line(name: str, value: str) -> bytes:
    """``Name: value`` CRLF, RFC 2047-encoded when not plain ASCII."""
    check_header(name, value)
    if value.isascii() and len(name) + len(value) < 900:
        return f"{name}: {value}{CRLF}".encode("ascii")
    encoded = Header(value, "utf-8", header_name=name).encode(linesep=CRLF)
    return f"{name}: {encoded}{CRLF}".encode("ascii")


def mailboxes(value: str) -> list[tuple[str, str]]:
    """``(display name, addr-spec)`` pairs of an address header's value, the
    addr-spec as the envelope writes it (``addresses.envelope_address``:
    validated, an internationalised domain in punycode).

    Raises :class:`InvalidAddress` when ``value`` holds no address or an
    invalid one."""
    pairs = getaddresses([value])
    if not pairs or any(not spec for _name, spec in pairs):
        raise InvalidAddress(f"Invalid address list {value!r}")
    return [(" ".join(name.split()), envelope_address(spec)) for name, spec in pairs]


def mailbox_text(display_name: str, spec: str, used: int) -> str:
    """One mailbox as header text, ``used`` characters into its line.

    Short printable ASCII names go as ``formataddr`` writes them (quoted when
    they hold specials); any other name is RFC 2047 encoded words of at most
    ``FOLD_AT`` characters a line, folded, and the ``<addr-spec>`` after it,
    as Django's ``sanitize_address`` does. ``spec`` must be ASCII."""
    if not display_name:
        return spec
    if display_name.isascii() and display_name.isprintable():
        text = formataddr((display_name, spec))
        if used + len(text) <= FOLD_AT * 4:
            return text
    else:
        word = _UTF8.header_encode(display_name)
        # RFC 2047 section 2: an encoded word is at most 75 characters.
        if len(word) <= 75:
            return f"{word} <{spec}>"
    words = encoded_words(display_name, first=FOLD_AT - used)
    fold = " " if len(words[-1]) + len(spec) + 3 <= FOLD_AT else f"{CRLF} "
    return f"{(CRLF + ' ').join(words)}{fold}<{spec}>"


def encoded_words(text: str, *, first: int = FOLD_AT - 1) -> list[str]:
    """``text`` as RFC 2047 ``B`` encoded words in UTF-8, one per folded line:
    the first at most ``first`` characters (at least room for one character),
    the others at most ``FOLD_AT - 1`` (after the folding space). Each word
    holds whole characters (RFC 2047 section 5), and a reader joins adjacent
    encoded words without the white space between them (section 6.2).

    Linear in ``len(text)``: ``email.charset.Charset.header_encode_lines``
    took milliseconds for a name of a few hundred characters."""
    overhead = len("=?utf-8?b??=")
    # Base64 turns each 3 octets into 4 characters.
    budget = max((first - overhead) // 4 * 3, 4)
    later = (FOLD_AT - 1 - overhead) // 4 * 3
    if text.isascii():
        words = [text[:budget]] + [
            text[i : i + later] for i in range(budget, len(text), later)
        ]
        return [_b_word(word) for word in words]
    words, start, size = [], 0, 0
    for index, char in enumerate(text):
        octets = 1 if char < "\x80" else len(char.encode("utf-8"))
        if size + octets > budget:
            words.append(text[start:index])
            start, size, budget = index, 0, later
        size += octets
    words.append(text[start:])
    return [_b_word(word) for word in words]


def _b_word(text: str) -> str:
    return f"=?utf-8?b?{base64.b64encode(text.encode('utf-8')).decode('ascii')}?="


def address_header(name: str, pairs: Iterable[tuple[str, str]]) -> bytes:
    """``Name: mailbox, mailbox`` CRLF from ``(display name, addr-spec)``
    pairs (see :func:`mailbox_text`); every line at most 998 octets."""
    used = len(name) + 2
    texts = [mailbox_text(display, spec, used) for display, spec in pairs]
    separator = ", " if len(texts) == 1 else f",{CRLF} "
    return f"{name}: {separator.join(texts)}{CRLF}".encode("ascii")


def ascii_domain(domain: str | None) -> str | None:
    """``domain`` as written in a header: an internationalised name in
    punycode (IDNA, as Django's ``punycode``). Raises :class:`InvalidAddress`
    for a domain IDNA refuses."""
    if not domain or domain.isascii():
        return domain
    try:
        return punycode(domain)
    except UnicodeError:
        raise InvalidAddress(f"Invalid domain {domain!r}") from None


_date_cache: tuple[int, bytes] = (0, b"")


def date_header() -> bytes:
    """``Date:`` for now (RFC 5322 3.3, as ``email.utils.formatdate()``
    writes it), made once per second: a newsletter goes out hundreds of
    messages a second, and ``formatdate`` is among the dearer calls per
    message. The value has whole seconds, so it is the same text."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, header_line("Date", formatdate(now)))
    return _date_cache[1]


def normalize_newlines(text: str) -> str:
    """Every line break (CRLF, CR or LF) as CRLF, SMTP's and RFC 5322's line
    ending."""
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", CRLF)


def _max_line(text: str) -> int:
    return max((len(line.encode("utf-8")) for line in text.split(CRLF)), default=0)


class _Layout:
    """One text of a body part, and what bounds its line lengths.

    ``fixed`` is the most octets of template text on a line that holds a
    placeholder, ``slots`` the most placeholders on one line; a recipient's
    line is then at most ``fixed + slots * growth * longest`` octets, where
    ``longest`` is the length in characters of their longest value (a value
    with line breaks only makes lines shorter). One comparison per part and
    recipient keeps the usual message on 7bit/8bit without measuring it; past
    that bound, only the lines whose own bound is over the limit are rendered
    alone and measured (``lines``: fixed octets, placeholders, the line).
    """

    __slots__ = ("personalizer", "template_needs_qp", "fixed", "slots", "lines")

    def __init__(self, personalizer: Personalizer) -> None:
        self.personalizer = personalizer
        escape = personalizer.escape
        static_longest = fixed = slots = 0
        self.lines: list[tuple[int, int, Personalizer]] = []
        for line in personalizer.text.split(CRLF):
            personalizer = Personalizer(line, escape=escape, segments=False)
            pieces = personalizer.pieces
            octets = sum(len(piece.encode("utf-8")) for piece in pieces[::2])
            static_longest = max(static_longest, octets)
            if len(pieces) > 1:
                fixed = max(fixed, octets)
                slots = max(slots, len(pieces) // 2)
                self.lines.append((octets, len(pieces) // 2, personalizer))
        self.template_needs_qp = static_longest > MAX_LINE
        self.fixed, self.slots = fixed, slots


class _Part:
    """One body part: its template, and the :class:`_Layout` of each text it
    can become. Without segments that is one, made here; with segments,
    one per combination of kept and dropped segments, made on first use (a
    dropped segment can join two lines into one, so each is measured as the
    text it is)."""

    __slots__ = ("personalizer", "content_type", "growth", "layout", "layouts")

    def __init__(self, text: str, content_type: str, *, escape: bool) -> None:
        text = normalize_newlines(text)
        if not text.endswith(CRLF):
            text += CRLF
        self.personalizer = Personalizer(text, escape=escape)
        self.content_type = content_type
        self.growth = HTML_GROWTH if escape else TEXT_GROWTH
        self.layouts: dict[tuple[bool, ...], _Layout] = {}
        self.layout = (
            None if self.personalizer.conditions else _Layout(self.personalizer)
        )

    def layout_for(self, values: Mapping[str, Any]) -> _Layout:
        """The layout of the text these values make (segments kept or
        dropped)."""
        layout = self.layout
        if layout is not None:
            return layout
        key = self.personalizer.key(values)
        layout = self.layouts.get(key)
        if layout is None:
            layout = _Layout(self.personalizer.variant(key))
            if len(self.layouts) < MAX_VARIANTS:
                self.layouts[key] = layout
        return layout

    def may_exceed(self, layout: _Layout, longest: int) -> bool:
        """Whether some line of ``layout`` may pass 998 octets when no value
        is longer than ``longest`` characters."""
        return layout.fixed + layout.slots * self.growth * longest > MAX_LINE

    def exceeds(self, layout: _Layout, values: Mapping[str, Any], longest: int) -> bool:
        """Whether a line of ``layout`` passes 998 octets with these values:
        each line that may is rendered alone and measured."""
        growth = self.growth
        for fixed, slots, line in layout.lines:
            if fixed + slots * growth * longest > MAX_LINE:
                if _max_line(line.render(values)) > MAX_LINE:
                    return True
        return False

    def encode(self, values: Mapping[str, Any], longest: int) -> bytes:
        layout = self.layout or self.layout_for(values)
        text = layout.personalizer.render(values)
        data = text.encode("utf-8")
        if layout.template_needs_qp or (
            self.may_exceed(layout, longest) and self.exceeds(layout, values, longest)
        ):
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


def static_header(name: str, value: Any) -> bytes:
    """A job's own header: an address header (:data:`ADDRESS_HEADERS`) as
    :func:`address_header` writes it, any other as :func:`header_line`.
    Raises :class:`InvalidAddress` or :class:`HeaderInjection`."""
    value = str(value)
    check_header(name, value)
    if name.lower() in ADDRESS_HEADERS:
        return address_header(name, mailboxes(value))
    return header_line(name, value)


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
        self.message_id_domain = ascii_domain(message_id_domain)
        self.parts = [_Part(body_text, "text/plain", escape=False)]
        if body_html:
            self.parts.append(_Part(body_html, "text/html", escape=True))
        static = [
            address_header("From", mailboxes(from_email)[:1]),
            b"MIME-Version: 1.0\r\n",
        ]
        for name, value in (headers or {}).items():
            static.append(static_header(name, value))
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
        # The longest value bounds every body line (see _Part); measured in
        # the same pass that looks for line breaks would cost more for the
        # usual message, which has none.
        longest = 0
        for value in values.values():
            if value is not None:
                size = len(value if type(value) is str else str(value))
                if size > longest:
                    longest = size
        lines = [
            self.static_headers,
            address_header("To", [(name, to_address)]),
            self.static_subject
            or header_line("Subject", " ".join(self.subject.render(values).split())),
            date_header(),
            header_line("Message-ID", message_id),
        ]
        for header, value in (extra_headers or {}).items():
            lines.append(header_line(header, value))
        if self.boundary is None:
            lines.append(self.parts[0].encode(values, longest))
            return b"".join(lines), message_id
        lines.append(b"\r\n")
        delimiter = f"--{self.boundary}{CRLF}".encode("ascii")
        for part in self.parts:
            lines.append(delimiter)
            lines.append(part.encode(values, longest))
            # The CRLF before a delimiter belongs to the delimiter (RFC 2046),
            # so the part's own final line break needs one more.
            lines.append(b"\r\n")
        lines.append(f"--{self.boundary}--{CRLF}".encode("ascii"))
        return b"".join(lines), message_id
