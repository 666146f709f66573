"""One message's SMTP exchange, staged, so that a failure says *where* it
happened.

``smtplib.SMTP.sendmail()`` hides the one distinction a mail queue needs
(RFC 5321 section 6.1, RFC 1047 "duplicate messages and SMTP"):

- a failure **before** the final ``"."`` of DATA was sent (connect, greeting,
  MAIL, RCPT, DATA, the content itself) leaves nothing at the relay: the
  message is safe to send again at once;
- a failure **after** the final ``"."`` was sent and before the relay's reply
  (a timeout, a reset, a disconnect) leaves the message *in doubt*: the relay
  may well have stored it and be about to deliver it.

:func:`exchange` runs MAIL FROM, one RCPT per recipient, DATA, the dot-stuffed
content with its final ``"."``, and reads the final reply, on the
``smtplib.SMTP`` connection the sending backend opened (which did the connect,
EHLO, STARTTLS and AUTH). The commands of one message are written and their
replies read here (:func:`_command`, :func:`read_reply`: smtplib's
``putcmd``/``getreply`` without their per-call overhead, the same rules and
exceptions), because on a fast relay smtplib's per-command Python (address
parsing in ``quoteaddr`` above all) costs more than the relay. It answers with
an :class:`Exchange` (who was accepted, who was refused with which reply) or
raises: smtplib's own exceptions for replies (``SMTPSenderRefused``,
``SMTPRecipientsRefused``, ``SMTPDataError``; judged by
``mailer.sending.outcomes``),
:class:`InDoubt` after the final ``"."``, and :class:`ExchangeTimeout` when
the message's time budget ran out before it.

When the relay offers PIPELINING (RFC 2920; Postfix, Exim and the big
providers do), MAIL FROM, every RCPT TO and DATA leave in one write and
their replies are read in order: two round trips per message instead of
three plus one per recipient, which is what a relay 25 ms away costs. The
stages, the exceptions and what is safe to retry stay the same: nothing of
the content is sent before DATA's 354, and a refusal or a broken connection
before the final "." leaves the relay nothing.

The whole exchange of one message is bounded by one deadline (``deadline``,
a ``time.monotonic()`` value): every reply is awaited at most until then
(give or take ``MIN_WAIT``), so
a relay that answers each command just under the timeout cannot stretch one
message to four timeouts.
"""

from __future__ import annotations

import re
import smtplib
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "GREETING",
    "MAIL",
    "RCPT",
    "DATA",
    "CONTENT",
    "FINAL_REPLY",
    "MIN_WAIT",
    "Exchange",
    "ExchangeTimeout",
    "InDoubt",
    "dot_stuff",
    "exchange",
    "greet",
    "quote_address",
]

#: Stages of one exchange, in order. Everything up to and including
#: ``CONTENT`` is before the final "."; ``FINAL_REPLY`` is after it.
GREETING = "EHLO"
MAIL = "MAIL FROM"
RCPT = "RCPT TO"
DATA = "DATA"
CONTENT = "message content"
FINAL_REPLY = "final reply"

#: The shortest wait for one reply (seconds) when the budget is nearly gone;
#: a socket timeout of 0 would mean "non-blocking", not "no time left".
MIN_WAIT = 0.05


@dataclass
class Exchange:
    """What the relay said to one message it accepted (final reply 2xx)."""

    accepted: list[str]
    #: Recipients refused at RCPT while others were accepted: address ->
    #: (code, reply), as ``smtplib.SMTP.sendmail`` reports them.
    refused: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    code: int = 250
    reply: bytes = b""
    stage: str = FINAL_REPLY


class InDoubt(smtplib.SMTPException):
    """The final "." was sent and no reply came (timeout, reset, disconnect):
    the relay may have the message. Never resend it on the spot."""

    def __init__(self, cause: BaseException, *, host: str, seconds: float) -> None:
        self.cause = cause
        self.stage = FINAL_REPLY
        detail = _describe(cause, seconds)
        super().__init__(
            f"no reply from {host} after the end of the message ({detail}); "
            "the relay may have accepted it"
        )


class ExchangeTimeout(smtplib.SMTPServerDisconnected):
    """The message's time budget ran out before its final "." was sent: the
    relay has nothing (safe to retry), but it is not answering in time."""

    def __init__(self, stage: str, *, host: str, seconds: float) -> None:
        self.stage = stage
        super().__init__(
            f"mail server {host} not answering: timed out after {seconds:g} s "
            f"waiting for the reply to {stage}"
        )


#: A bare addr-spec that needs no parsing to be written as ``<addr-spec>``:
#: ASCII, none of RFC 5322's specials or white space. Anything else goes
#: through ``smtplib.quoteaddr`` as before.
_PLAIN_ADDRESS = re.compile(r"[^\s<>()\[\]\",;:\\]+@[^\s<>()\[\]\",;:\\@]+")


def quote_address(address: str) -> str:
    """``address`` as the path of MAIL FROM / RCPT TO (RFC 5321 4.1.2),
    as ``smtplib.quoteaddr`` writes it; a plain ASCII addr-spec without
    parsing (``quoteaddr`` parses every address with ``email.utils``, about
    0.1 ms each)."""
    if address.isascii() and _PLAIN_ADDRESS.fullmatch(address):
        return f"<{address}>"
    return smtplib.quoteaddr(address)


def dot_stuff(data: bytes) -> bytes:
    """RFC 5321 4.5.2: one more "." before every line that starts with ".".

    The same bytes as ``smtplib._quote_periods`` (a line starts after LF),
    by ``bytes.replace`` instead of a regular expression."""
    if data.startswith(b"."):
        data = b"." + data
    return data.replace(b"\n.", b"\n..")


def _command(smtp: smtplib.SMTP, line: str, deadline: float) -> tuple[int, bytes]:
    """Write one command line and read its reply (``putcmd`` + ``getreply``)."""
    if "\r" in line or "\n" in line:
        # smtplib's own guard (putcmd): a line break would smuggle a command.
        raise ValueError(
            f"command and arguments contain prohibited newline characters: {line!r}"
        )
    if smtp.debuglevel > 0:
        _arm(smtp, deadline)
        smtp.putcmd(line)
        return smtp.getreply()
    _write(smtp, (line + "\r\n").encode(smtp.command_encoding), deadline)
    return read_reply(smtp, deadline)


def _write(smtp: smtplib.SMTP, data: bytes, deadline: float) -> None:
    """``smtplib.SMTP.send``: one ``sendall``; a broken link closes the
    connection and raises ``SMTPServerDisconnected``."""
    sock = smtp.sock
    if sock is None:
        raise smtplib.SMTPServerDisconnected("please run connect() first")
    _wait_until(sock, deadline)
    try:
        sock.sendall(data)
    except OSError as error:
        smtp.close()
        raise smtplib.SMTPServerDisconnected("Server not connected") from error


def read_reply(smtp: smtplib.SMTP, deadline: float) -> tuple[int, bytes]:
    """``smtplib.SMTP.getreply`` (RFC 5321 4.2: a multiline reply's lines
    but the last have "-" after the code), reading at most until
    ``deadline`` (``time.monotonic()`` seconds). Returns (code, text), the
    text's lines joined by ``\n``.

    :raises smtplib.SMTPServerDisconnected: the relay closed the connection
        (which is then closed here too, as ``getreply`` does).
    """
    if smtp.debuglevel > 0:
        _arm(smtp, deadline)
        return smtp.getreply()
    sock = smtp.sock
    if sock is None:
        raise smtplib.SMTPServerDisconnected("please run connect() first")
    _wait_until(sock, deadline)
    if smtp.file is None:
        smtp.file = sock.makefile("rb")
    readline = smtp.file.readline
    limit = smtplib._MAXLINE
    lines = []
    while True:
        try:
            line = readline(limit + 1)
        except OSError as error:
            smtp.close()
            raise smtplib.SMTPServerDisconnected(
                "Connection unexpectedly closed: " + str(error)
            ) from error
        if not line:
            smtp.close()
            raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
        if len(line) > limit:
            smtp.close()
            raise smtplib.SMTPResponseException(500, "Line too long.")
        lines.append(line[4:].strip(b" \t\r\n"))
        try:
            code = int(line[:3])
        except ValueError:
            code = -1
            break
        if line[3:4] != b"-":
            break
    return code, lines[0] if len(lines) == 1 else b"\n".join(lines)


def peer(smtp: smtplib.SMTP) -> str:
    """``host:port`` of the relay, for messages that must name it; kept on
    the connection object (one per connection) so that it costs one
    ``getpeername`` per connection, not one per message."""
    known = getattr(smtp, "_mailer_peer", None)
    if known is not None:
        return known
    host = getattr(smtp, "_host", "") or "?"
    try:
        port = smtp.sock.getpeername()[1]
    except (AttributeError, OSError, IndexError):
        return host
    smtp._mailer_peer = f"{host}:{port}"
    return smtp._mailer_peer


def _describe(cause: BaseException, seconds: float) -> str:
    text = str(cause) or type(cause).__name__
    if isinstance(cause, TimeoutError) or "timed out" in text:
        return f"timed out after {seconds:g} s"
    return text


def _arm(smtp: smtplib.SMTP, deadline: float) -> None:
    """Let the next read wait only as long as the message's budget allows."""
    if smtp.sock is not None:
        _wait_until(smtp.sock, deadline)


def _wait_until(sock: socket.socket, deadline: float) -> None:
    """Give ``sock`` the timeout that ends at ``deadline``
    (``time.monotonic()``), give or take ``MIN_WAIT``.

    ``settimeout()`` is a system call each time (it sets the descriptor's
    non-blocking flag again), so the timeout is changed only when it would
    end before the deadline (a new message's budget) or more than
    ``MIN_WAIT`` after it: once per message against a relay that answers
    in time."""
    left = max(MIN_WAIT, deadline - time.monotonic())
    current = sock.gettimeout()
    if current is None or current < left or current > left + MIN_WAIT:
        sock.settimeout(left)


def exchange(
    smtp: smtplib.SMTP,
    envelope_from: str,
    recipients: Sequence[str],
    data: bytes,
    *,
    deadline: float,
    budget: float,
    mail_options: Sequence[str] = (),
    rcpt_options: Sequence[str] = (),
    before_content: Callable[[], None] | None = None,
) -> Exchange:
    """Send one message over the open connection ``smtp``.

    :param envelope_from: the reverse-path (``""`` for the null sender).
    :param recipients: envelope recipients, at least one.
    :param data: the RFC 5322 message, CRLF line endings; dot-stuffed here.
    :param deadline: ``time.monotonic()`` by which the final reply must have
        come; each reply is awaited at most until then.
    :param budget: the timeout to name in error messages (seconds).
    :param mail_options: ESMTP parameters of MAIL FROM (``BODY=8BITMIME``,
        ``SMTPUTF8``, ``SIZE=n``; RFC 6152, 6531, 1870).
    :param rcpt_options: ESMTP parameters of every RCPT TO.
    :param before_content: called once DATA was answered 354, right before
        the content and its final "." are sent (the engine waits there for
        the previous message's outcome to be committed, see
        ``mailer.sending.writebehind``); what it raises is raised as is,
        the connection closed, nothing of the content sent.
    :returns: the :class:`Exchange` when the relay accepted the message.
    :raises smtplib.SMTPSenderRefused: MAIL FROM refused.
    :raises smtplib.SMTPRecipientsRefused: every recipient refused.
    :raises smtplib.SMTPDataError: DATA or the final reply refused.
    :raises ExchangeTimeout: the budget ran out before the final ".".
    :raises InDoubt: no reply after the final "." (timeout, reset, EOF).
    :raises smtplib.SMTPServerDisconnected: the connection broke before the
        final "." (safe to retry on a new connection).
    """
    host = peer(smtp)
    stage = GREETING
    try:
        _arm(smtp, deadline)
        smtp.ehlo_or_helo_if_needed()
        esmtp = smtp.does_esmtp
        options = list(mail_options) if esmtp else []
        # RFC 1870, as smtplib's sendmail() does: a relay that advertises
        # SIZE refuses an oversized message at MAIL FROM, before its bytes.
        if smtp.has_extn("size") and not any(
            o.upper().startswith("SIZE=") for o in options
        ):
            options.append(f"SIZE={len(data)}")
        stage = MAIL
        if options and any(o.lower() == "smtputf8" for o in options):
            # smtplib's mail(): UTF-8 commands only where RFC 6531 allows.
            if not smtp.has_extn("smtputf8"):
                raise smtplib.SMTPNotSupportedError("SMTPUTF8 not supported by server")
            smtp.command_encoding = "utf-8"
        option_text = " " + " ".join(options) if options else ""
        mail_line = f"MAIL FROM:{quote_address(envelope_from)}{option_text}"
        rcpt_text = " " + " ".join(rcpt_options) if rcpt_options and esmtp else ""
        if smtp.debuglevel == 0 and smtp.has_extn("pipelining"):
            # RFC 2920: MAIL, every RCPT and DATA in one write, the replies
            # read in order; the content still waits for DATA's 354. Two
            # round trips per message instead of 3 + one per recipient.
            where = [stage]
            try:
                accepted, refused = _pipelined(
                    smtp,
                    mail_line,
                    recipients,
                    rcpt_text,
                    envelope_from,
                    deadline,
                    where,
                )
            finally:
                stage = where[0]
        else:
            code, reply = _command(smtp, mail_line, deadline)
            if code != 250:
                if code == 421:
                    smtp.close()
                else:
                    _rset(smtp, deadline)
                raise smtplib.SMTPSenderRefused(code, reply, envelope_from)
            stage = RCPT
            refused: dict[str, tuple[int, bytes]] = {}
            accepted: list[str] = []
            for recipient in recipients:
                code, reply = _command(
                    smtp, f"RCPT TO:{quote_address(recipient)}{rcpt_text}", deadline
                )
                _file_rcpt_reply(smtp, recipient, code, reply, accepted, refused)
            if not accepted:
                _rset(smtp, deadline)
                raise smtplib.SMTPRecipientsRefused(refused)
            stage = DATA
            code, reply = _command(smtp, "DATA", deadline)
            if code != 354:
                if code == 421:
                    smtp.close()
                else:
                    _rset(smtp, deadline)
                raise smtplib.SMTPDataError(code, reply)
        if before_content is not None:
            try:
                before_content()
            except BaseException:
                smtp.close()
                raise
        stage = CONTENT
        _write(smtp, _content(data), deadline)
    except smtplib.SMTPResponseException:
        raise
    except (smtplib.SMTPServerDisconnected, OSError) as error:
        if time.monotonic() >= deadline - MIN_WAIT and _timed_out(error):
            smtp.close()
            raise ExchangeTimeout(stage, host=host, seconds=budget) from error
        raise
    return _final(smtp, accepted, refused, deadline, host, budget)


def _content(data: bytes) -> bytes:
    """The bytes after DATA's 354: RFC 5321 4.5.2, a line starting with "."
    gets one more, and the content ends with CRLF "." CRLF. Written with one
    ``sendall``, so that the final "." is sent only if everything before it
    was: ``sendall()`` raising means its last bytes never left."""
    content = dot_stuff(data)
    return content + (b".\r\n" if content.endswith(b"\r\n") else b"\r\n.\r\n")


def _final(
    smtp: smtplib.SMTP,
    accepted: list[str],
    refused: dict[str, tuple[int, bytes]],
    deadline: float,
    host: str,
    budget: float,
) -> Exchange:
    """Read the reply to the final "."; whatever goes wrong now leaves the
    message in doubt."""
    try:
        code, reply = read_reply(smtp, deadline)
    except (smtplib.SMTPServerDisconnected, OSError) as error:
        smtp.close()
        raise InDoubt(error, host=host, seconds=budget) from error
    if code != 250:
        if code == 421:
            smtp.close()
        else:
            # The transaction is over (RFC 5321 4.1.1.4), but a server that
            # failed inside (aiosmtpd after a handler error) may keep it
            # open and answer the next MAIL FROM "503 nested MAIL command";
            # smtplib's sendmail() resets here too. A server that does not
            # answer the RSET is left for the next message to reconnect.
            try:
                _rset(smtp, deadline)
            except (smtplib.SMTPException, OSError):
                smtp.close()
        raise smtplib.SMTPDataError(code, reply)
    return Exchange(accepted=accepted, refused=refused, code=code, reply=reply)


def _pipelined(
    smtp: smtplib.SMTP,
    mail_line: str,
    recipients: Sequence[str],
    rcpt_text: str,
    envelope_from: str,
    deadline: float,
    where: list[str],
) -> tuple[list[str], dict[str, tuple[int, bytes]]]:
    """MAIL FROM, one RCPT TO per recipient and DATA in one write (RFC 2920
    section 3.1: DATA ends the group), then their replies in order.

    Returns (accepted, refused) once DATA was answered 354, so the caller
    sends the content. Raises what the step-by-step exchange raises for the
    same replies (``SMTPSenderRefused``, ``SMTPRecipientsRefused``,
    ``SMTPDataError``); nothing of the message has been sent then, and the
    transaction is reset (or the connection closed) so the next message
    starts clean. A broken connection raises ``SMTPServerDisconnected``:
    before the final ".", safe to retry. ``where[0]`` is set to the stage
    whose reply is awaited (for the caller's timeout message).
    """
    lines = [mail_line]
    lines += [f"RCPT TO:{quote_address(r)}{rcpt_text}" for r in recipients]
    lines.append("DATA")
    for line in lines:
        if "\r" in line or "\n" in line:
            # smtplib's own guard (putcmd): a line break would smuggle a command.
            raise ValueError(
                f"command and arguments contain prohibited newline characters: {line!r}"
            )
    _write(smtp, ("\r\n".join(lines) + "\r\n").encode(smtp.command_encoding), deadline)
    code, reply = read_reply(smtp, deadline)
    if code != 250:
        if code == 421:
            smtp.close()
        else:
            _drain(smtp, len(recipients) + 1, deadline)
        raise smtplib.SMTPSenderRefused(code, reply, envelope_from)
    refused: dict[str, tuple[int, bytes]] = {}
    accepted: list[str] = []
    where[0] = RCPT
    for recipient in recipients:
        code, reply = read_reply(smtp, deadline)
        _file_rcpt_reply(smtp, recipient, code, reply, accepted, refused)
    where[0] = DATA
    code, reply = read_reply(smtp, deadline)
    if code == 354 and accepted:
        return accepted, refused
    if code == 354:
        # RFC 2920 3.1: a server may accept DATA after refusing every
        # recipient. Nothing is sent after it: closing the connection
        # mid-DATA leaves the relay nothing, where a "." would end an
        # (empty) message.
        smtp.close()
    elif code == 421:
        smtp.close()
    else:
        _rset(smtp, deadline)
    if not accepted:
        raise smtplib.SMTPRecipientsRefused(refused)
    raise smtplib.SMTPDataError(code, reply)


def _drain(smtp: smtplib.SMTP, count: int, deadline: float) -> None:
    """Read the replies to the rest of a refused pipeline, then reset; a
    DATA answered 354 despite the refused MAIL (or a connection that breaks
    meanwhile) closes the connection instead, sending nothing more."""
    try:
        for _ in range(count):
            code, _reply_text = read_reply(smtp, deadline)
    except (smtplib.SMTPException, OSError):
        smtp.close()
        return
    if code == 354:
        smtp.close()
        return
    _rset(smtp, deadline)


def greet(smtp: smtplib.SMTP, *, deadline: float, budget: float) -> None:
    """EHLO (or HELO) on ``smtp`` if not done yet, waiting at most until
    ``deadline`` (``time.monotonic()``), so that the caller can read what the
    relay offers (``smtp.esmtp_features``) before :func:`exchange`.

    :param budget: the timeout to name in error messages (seconds).
    :raises smtplib.SMTPHeloError: the greeting was refused.
    :raises ExchangeTimeout: no reply before ``deadline``.
    :raises smtplib.SMTPServerDisconnected, OSError: the connection broke
        (nothing was sent: safe to retry on a new connection).
    """
    host = peer(smtp)
    try:
        _arm(smtp, deadline)
        smtp.ehlo_or_helo_if_needed()
    except smtplib.SMTPResponseException:
        raise
    except (smtplib.SMTPServerDisconnected, OSError) as error:
        if time.monotonic() >= deadline - MIN_WAIT and _timed_out(error):
            smtp.close()
            raise ExchangeTimeout(GREETING, host=host, seconds=budget) from error
        raise


def _timed_out(error: BaseException) -> bool:
    while error is not None:
        if isinstance(error, (TimeoutError, socket.timeout)) or "timed out" in str(
            error
        ):
            return True
        error = error.__cause__ or error.__context__
    return False


def _rset(smtp: smtplib.SMTP, deadline: float) -> None:
    """Reset the transaction after a refusal, as ``sendmail`` does; a server
    that drops the connection meanwhile is found by the next command."""
    try:
        _arm(smtp, deadline)
        smtp.rset()
    except smtplib.SMTPServerDisconnected:
        pass


def _file_rcpt_reply(
    smtp: smtplib.SMTP,
    recipient: str,
    code: int,
    reply: bytes,
    accepted: list[str],
    refused: dict[str, tuple[int, bytes]],
) -> None:
    """File one RCPT reply (RFC 5321 4.2.5) under ``accepted`` (250, 251) or
    ``refused``. A 421 closes the connection and raises
    ``SMTPRecipientsRefused``: the relay is going away, no further reply
    will come."""
    if code in (250, 251):
        accepted.append(recipient)
        return
    refused[recipient] = (code, reply)
    if code == 421:
        smtp.close()
        raise smtplib.SMTPRecipientsRefused(refused)
