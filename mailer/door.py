"""The rules every email meets before it is queued or written: no line break
in a header (header injection), no message over ``MAILER_MAX_MESSAGE_BYTES``.

Both doors call these (:func:`mailer.queue.build` for single mail,
:func:`mailer.jobs.services.create_job` for job mail), and the job composer
(:mod:`mailer.jobs.compose`) calls :func:`check_header` again as it writes each
header line, so one rule gives one error and one wording wherever it trips.
"""

from __future__ import annotations

from collections.abc import Iterable

from mailer.conf import conf
from mailer.exceptions import HeaderInjection, MessageTooLarge

__all__ = ["check_header", "check_headers", "check_size", "has_line_break"]


def has_line_break(text: str) -> bool:
    """Does ``text`` hold a CR or an LF? Either ends a header line on the
    wire (RFC 5322 2.2); servers differ on a bare one, which is what SMTP
    smuggling exploits."""
    return "\n" in text or "\r" in text


def check_header(name: str, value: object) -> None:
    """Refuse a header whose name or value holds a CR or LF.

    A line break would end the header and start another one, a ``Bcc:`` say,
    chosen by whoever wrote the value (RFC 5322 2.2: a header field is one
    line, folded only by whitespace after CRLF, which the writer does, not
    the caller). ``value`` is compared as ``str(value)`` (a lazy translation
    counts as its text). Raises :class:`~mailer.exceptions.HeaderInjection`.
    """
    text = str(value)
    if has_line_break(name) or has_line_break(text):
        raise HeaderInjection(f"Header {name!r} contains a line break: {text!r}")


def check_headers(headers: Iterable[tuple[str, object]]) -> None:
    """:func:`check_header` for each ``(name, value)`` pair, in order."""
    for name, value in headers:
        check_header(name, value)


def check_size(size: int) -> None:
    """Refuse a message of ``size`` bytes over ``MAILER_MAX_MESSAGE_BYTES``:
    a relay would refuse it (RFC 1870 SIZE, a 552 reply) once per recipient.
    Raises :class:`~mailer.exceptions.MessageTooLarge`."""
    if size > conf.MAILER_MAX_MESSAGE_BYTES:
        raise MessageTooLarge(
            f"The email is {size:,} bytes, over MAILER_MAX_MESSAGE_BYTES "
            f"({conf.MAILER_MAX_MESSAGE_BYTES:,})"
        )
