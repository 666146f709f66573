"""A controllable SMTP server for tests, benchmarks and local development.

We test against a real SMTP conversation instead of Django's locmem backend
because the interesting failures of a mail queue happen on the wire: a 550 for
one recipient of a batch, a 451 that turns into success on the next run, a
server that hangs up after N messages or answers 421, a relay that is down and
comes back on the same port. :class:`SMTPTestServer` plays all of these on
demand, so the app's tests, its benchmarks, the example project and users' own
test suites can use one implementation.

It runs aiosmtpd's threaded ``Controller`` (an asyncio loop in a background
thread), so plain synchronous code can talk to it::

    from mailer.testing.smtp import SMTPTestServer

    with SMTPTestServer() as smtp:
        smtp.reject(["gone@example.com"])
        smtp.defer(["busy@example.com"], times=1)
        ...  # point EMAIL_HOST / EMAIL_PORT at smtp.host / smtp.port, send
        assert smtp.wait_for(2, timeout=5)
        assert smtp.messages[0].message["Subject"] == "Hello"

For a local sink in a process of its own (nothing scripted, just "accept
and show"), aiosmtpd's own command line does the job. The example project's
``manage.py smtp_sink`` runs it with a handler that prints one line per
email; aiosmtpd's ``Debugging`` handler prints each email in full::

    python -m aiosmtpd -n -u -l 127.0.0.1:1025 -c aiosmtpd.handlers.Debugging

aiosmtpd is an optional dependency (the ``testing`` extra), so it is imported
only here and never from ``mailer.testing``.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import email
import email.policy
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.message import EmailMessage
from types import TracebackType
from typing import Any, cast

try:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP, Envelope, Session
except ImportError as exc:  # pragma: no cover - depends on what is installed
    raise ImportError(
        "mailer.testing.smtp needs aiosmtpd, which is optional: "
        'pip install "django-mailer-jobs[testing]" (or pip install aiosmtpd)'
    ) from exc

__all__ = ["ReceivedEmail", "SMTPTestServer"]

logger = logging.getLogger(__name__)

#: Messages bigger than this get aiosmtpd's 552; large enough for attachments.
DATA_SIZE_LIMIT = 50 * 1024 * 1024

#: Upper bound for closing client connections and joining the loop thread.
STOP_TIMEOUT = 5.0

#: Name in the 220 banner and EHLO reply. Passing one matters: aiosmtpd's
#: default is socket.getfqdn(), a DNS lookup per connection, which stalls for
#: seconds on machines without working DNS (CI sandboxes).
SERVER_HOSTNAME = "smtp-test-server.localhost"

#: Longest a stalled reply or a silent greeting waits (seconds), so that a
#: forgotten behaviour cannot keep a test's server busy for ever.
STALL_LIMIT = 600.0


@dataclass(frozen=True)
class ReceivedEmail:
    """One message the server accepted (replied 250 to DATA)."""

    mail_from: str
    #: Only the recipients that were accepted at RCPT TO.
    rcpt_tos: list[str]
    #: Exactly the bytes received after DATA, with SMTP dot-stuffing undone.
    data: bytes
    #: 1 for the first SMTP session (connection) since start or reset(), 2 for
    #: the next, ...: lets a test see that a client reconnected.
    session_id: int
    #: time.monotonic() when the message was accepted.
    received_at: float
    #: ESMTP parameters of MAIL FROM (``["BODY=8BITMIME", "SIZE=1234"]``)
    #: and of the RCPTs, as the client sent them.
    mail_options: list[str] = field(default_factory=list)
    rcpt_options: list[str] = field(default_factory=list)
    #: The name the client greeted with (EHLO/HELO).
    helo_name: str = ""
    #: time.time() when the message was accepted (for per-second windows).
    received_wall: float = 0.0

    @property
    def message(self) -> EmailMessage:
        """The parsed message; ``email.policy.default`` decodes headers for us."""
        return cast(
            EmailMessage,
            email.message_from_bytes(self.data, policy=email.policy.default),
        )


@dataclass
class _Refusal:
    code: int
    reply: str
    #: How many more RCPTs to refuse; None means forever.
    remaining: int | None = None

    def __str__(self) -> str:
        return f"{self.code} {self.reply}"


@dataclass
class _AfterData:
    #: Seconds before the final reply; None: never.
    seconds: float | None
    #: How many more messages; None means every one.
    remaining: int | None = None


def _applies(rule: _Refusal | _AfterData) -> bool:
    """Whether a counted rule acts on this command or message, using up one
    of its ``remaining`` times (``None``: every time). Call with the
    server's lock held."""
    if rule.remaining is None:
        return True
    if rule.remaining > 0:
        rule.remaining -= 1
        return True
    return False


def _as_addresses(addresses: str | Iterable[str]) -> list[str]:
    # A bare string is one address, not an iterable of characters.
    if isinstance(addresses, str):
        return [addresses.lower()]
    return [address.lower() for address in addresses]


class _Session(SMTP):
    """aiosmtpd's per-connection protocol, plus the counters our behaviours need."""

    def __init__(self, owner: SMTPTestServer, handler: _Handler, **kwargs: Any):
        # aiosmtpd keeps command_size_limits on the SMTP *class*: every new
        # connection clear()s it and every EHLO raises the MAIL limit in it, so
        # concurrent sessions reset each other's limits (and it grows on every
        # EHLO). One dict per connection; set before SMTP.__init__ clears it.
        self.command_size_limits = collections.defaultdict(
            lambda: SMTP.command_size_limit
        )
        super().__init__(handler, **kwargs)
        self.owner = owner
        #: 0 until the client greets; see SMTPTestServer._greeted().
        self.session_id = 0
        #: Messages accepted in this session, for disconnect_after / 421.
        self.accepted = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.owner._live_sessions.add(self)

    def connection_lost(self, error: Exception | None) -> None:
        self.owner._live_sessions.discard(self)
        super().connection_lost(error)

    def hang_up_soon(self) -> None:
        """Close the connection once the reply being sent has been written.

        Handler hooks return their reply and aiosmtpd writes it afterwards,
        without yielding to the loop in between, so a call_soon() callback
        runs after the write; transport.close() then flushes it and sends FIN.
        """
        asyncio.get_running_loop().call_soon(self._close_transport)

    def _close_transport(self) -> None:
        if self.transport is not None:
            self.transport.close()

    @property
    def is_closing(self) -> bool:
        return self.transport is None or self.transport.is_closing()

    async def push(self, status: Any) -> None:
        # Every reply passes here (the 220 greeting included), which is where
        # a slow or silent relay is played.
        await self.owner._before_reply(self, status)
        if self.is_closing:
            return  # reset or stalled until the client gave up
        await super().push(status)

    async def smtp_DATA(self, arg: str) -> None:
        if self.owner._hangs_up_at(self, "data"):
            return  # closed before the 354: nothing of the message came
        await super().smtp_DATA(arg)

    async def wait_closed_or(self, seconds: float | None) -> None:
        """Sleep ``seconds`` (None: until the client hangs up), in short
        steps, ending early when the connection closes; bounded by
        STALL_LIMIT in any case."""
        limit = STALL_LIMIT if seconds is None else min(seconds, STALL_LIMIT)
        deadline = time.monotonic() + limit
        while not self.is_closing:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(0.02, left))


class _Handler:
    """aiosmtpd hooks; the decisions live in SMTPTestServer.

    A separate object because aiosmtpd inspects every attribute of the handler
    (looking for handle_* and auth_*) on each connection, which would evaluate
    SMTPTestServer's properties.
    """

    def __init__(self, owner: SMTPTestServer) -> None:
        self.owner = owner

    async def handle_HELO(
        self, server: _Session, session: Session, envelope: Envelope, hostname: str
    ) -> str:
        session.host_name = hostname
        self.owner._greeted(server)
        return f"250 {server.hostname}"

    # The five-argument form: aiosmtpd warns (DeprecationWarning) about four.
    async def handle_EHLO(
        self,
        server: _Session,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        self.owner._greeted(server)
        return self.owner._ehlo_lines(responses)

    async def handle_MAIL(
        self,
        server: _Session,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if self.owner._hangs_up_at(server, "mail"):
            return "250 OK"  # never written: the connection is closed
        if self.owner._closing_with_421(server):
            server.hang_up_soon()
            return "421 4.7.0 Closing connection"
        refusal = self.owner._sender_refusal
        if refusal is not None:
            return refusal
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self,
        server: _Session,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if self.owner._hangs_up_at(server, "rcpt"):
            return "250 OK"  # never written: the connection is closed
        # Refusing = replying without adding the address to the envelope.
        refusal = self.owner._refusal(address)
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(
        self, server: _Session, session: Session, envelope: Envelope
    ) -> str:
        delay = self.owner._delay_seconds
        if delay > 0:
            await asyncio.sleep(delay)
        refusal = self.owner._data_refusal()
        if refusal is not None:
            return refusal
        if self.owner._crashes_at_data():
            # aiosmtpd answers "500 Error: (RuntimeError) ..." and, unlike
            # after a refusal, leaves the transaction open: a client that
            # does not reset gets "503 nested MAIL command" next.
            raise RuntimeError("the mailbox cannot be written")
        hang_up = self.owner._accept(server, envelope)
        # The message is stored at the final "."; what the client hears now
        # is up to the behaviours below.
        after = self.owner._after_data()
        if after == "reset":
            server._close_transport()
            return "250 OK"  # never written: the connection is closed
        if after is not None:
            await server.wait_closed_or(after.seconds)
        if hang_up:
            server.hang_up_soon()
        return "250 OK"


class _Controller(Controller):
    """aiosmtpd's threaded Controller, serving on a socket we bound ourselves.

    Binding in SMTPTestServer.start() (in the caller's thread) lets port 0 pick
    a free port that we know before the Controller's readiness probe connects,
    makes "address already in use" fail at once instead of after the ready
    timeout, and lets start() after stop() take the same port again.
    """

    def __init__(
        self,
        owner: SMTPTestServer,
        sock: socket.socket,
        handler: _Handler,
        **kwargs: Any,
    ) -> None:
        self._owner = owner
        self._sock = sock
        super().__init__(handler, **kwargs)

    def factory(self) -> _Session:
        return _Session(self._owner, self.handler, loop=self.loop, **self.SMTP_kwargs)

    def _create_server(self) -> Any:
        # Overriding this hook is how aiosmtpd's own controllers choose where
        # to listen (its docstring invites subclasses to do so).
        return self.loop.create_server(
            self._factory_invoker, sock=self._sock, ssl=self.ssl_context
        )


class SMTPTestServer:
    """An SMTP server in a background thread whose replies tests can script.

    Thread safety: behaviours can be changed from any thread while mail is
    flowing; they take effect at the next SMTP command. Everything the loop
    thread and callers share is guarded by one lock.

    ``keep_data=False`` is the benchmark "sink": messages are counted (``count``,
    ``counts``) but not stored, so 100,000 of them don't fill memory.
    ``on_message`` is called in the server thread for every accepted message
    (stored or not); exceptions from it are logged and ignored, so a broken
    callback does not turn into SMTP errors.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        keep_data: bool = True,
        on_message: Callable[[ReceivedEmail], object] | None = None,
        ready_timeout: float = 5.0,
    ) -> None:
        self.host = host
        #: 0 until start() binds; then the real port, kept across stop()/start().
        self.port = port
        self.keep_data = keep_data
        self.on_message = on_message
        self.ready_timeout = ready_timeout
        self._cond = threading.Condition(threading.Lock())
        self._control = threading.Lock()
        self._controller: _Controller | None = None
        self._handler = _Handler(self)
        # Only touched from the loop thread (and by stop() through the loop).
        self._live_sessions: set[_Session] = set()
        self._clear_received()
        self._clear_behaviours()

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        """Listen on ``host:port`` (a free port the first time if port is 0).

        After :meth:`stop`, ``start()`` listens on the same port again: the
        relay that went away (connections refused meanwhile) and came back.
        Raises RuntimeError if already running, OSError if the port is taken.
        """
        with self._control:
            if self._controller is not None:
                raise RuntimeError("SMTPTestServer is already running")
            sock = self._bind()
            controller = _Controller(
                self,
                sock,
                self._handler,
                hostname=self.host,
                port=self.port,
                ready_timeout=self.ready_timeout,
                server_hostname=SERVER_HOSTNAME,
                data_size_limit=DATA_SIZE_LIMIT,
                enable_SMTPUTF8=True,
            )
            try:
                controller.start()
            except BaseException:
                # Joins the loop thread if it still runs (which closes the
                # listening socket and the loop); else we close them here.
                controller.stop(no_assert=True)
                sock.close()
                if not controller.loop.is_closed():
                    controller.loop.close()
                raise
            self._controller = controller

    def stop(self) -> None:
        """Stop listening and close every client connection; idempotent.

        aiosmtpd's Controller.stop() cancels the loop's tasks, then joins its
        thread without a timeout, and that thread then waits in
        Server.wait_closed(), which on Python 3.12+ waits for every open
        connection. So first, inside the loop and bounded, we stop listening
        and close each session ourselves (clients see a clean FIN, like a
        relay going away); by the time the Controller stops, nothing is left
        that could keep it waiting.
        """
        with self._control:
            controller = self._controller
            if controller is None:
                return
            self._controller = None
            future = asyncio.run_coroutine_threadsafe(
                self._close_everything(controller), controller.loop
            )
            try:
                future.result(timeout=STOP_TIMEOUT)
            except concurrent.futures.TimeoutError:
                future.cancel()
            controller.stop()

    @property
    def is_running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._controller is not None

    def open_sockets(self) -> list[socket.socket]:
        """The server's side of the connections open now (``socket.socket``
        objects, for inspecting their options; do not read or write them)."""
        return [
            session.transport.get_extra_info("socket")
            for session in list(self._live_sessions)
            if session.transport is not None
        ]

    def __enter__(self) -> SMTPTestServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def email_settings(self) -> dict[str, Any]:
        """Django EMAIL_* settings pointing at this server, for override_settings."""
        return {
            "EMAIL_HOST": self.host,
            "EMAIL_PORT": self.port,
            "EMAIL_HOST_USER": "",
            "EMAIL_HOST_PASSWORD": "",
            "EMAIL_USE_TLS": False,
            "EMAIL_USE_SSL": False,
        }

    # -- what was received --------------------------------------------------

    @property
    def messages(self) -> list[ReceivedEmail]:
        """A copy of the accepted messages, oldest first (empty if not keep_data)."""
        with self._cond:
            return list(self._messages)

    @property
    def count(self) -> int:
        """Messages accepted since start or reset(), kept or not."""
        with self._cond:
            return self._count

    @property
    def counts(self) -> collections.Counter[str]:
        """A copy of accepted deliveries per recipient address (as sent)."""
        with self._cond:
            return collections.Counter(self._counts)

    @property
    def connections(self) -> int:
        """SMTP sessions opened so far (clients that said EHLO/HELO)."""
        with self._cond:
            return self._connections

    @property
    def first_at(self) -> float | None:
        """time.monotonic() of the first accepted message, or None."""
        with self._cond:
            return self._first_at

    @property
    def last_at(self) -> float | None:
        """time.monotonic() of the latest accepted message, or None."""
        with self._cond:
            return self._last_at

    def wait_for(self, count: int, timeout: float = 5.0) -> bool:
        """Block until at least ``count`` messages were accepted, or timeout.

        Returns whether they arrived, so tests can ``assert server.wait_for(3)``.
        """
        with self._cond:
            return self._cond.wait_for(lambda: self._count >= count, timeout)

    def reset(self) -> None:
        """Forget received messages and counters, and accept everything again."""
        with self._cond:
            self._clear_received()
            self._clear_behaviours()

    # -- behaviours ----------------------------------------------------------

    def reject(
        self,
        addresses: str | Iterable[str],
        code: int = 550,
        reply: str = "5.1.1 No such user",
    ) -> None:
        """Refuse these recipients at RCPT TO, every time (case-insensitive)."""
        with self._cond:
            for address in _as_addresses(addresses):
                self._defers.pop(address, None)
                self._rejects[address] = _Refusal(code, reply)

    def defer(
        self,
        addresses: str | Iterable[str],
        code: int = 451,
        reply: str = "4.3.0 Try again later",
        times: int | None = None,
    ) -> None:
        """Answer a temporary failure at RCPT TO for these recipients.

        ``times=N`` defers only the first N attempts per address, then accepts
        (a greylisting relay); ``None`` defers forever.
        """
        if times is not None and times < 0:
            raise ValueError("times must be None or >= 0")
        with self._cond:
            for address in _as_addresses(addresses):
                self._rejects.pop(address, None)
                self._defers[address] = _Refusal(code, reply, times)

    def disconnect_after(self, k: int | None) -> None:
        """After accepting k messages in one session, drop that connection.

        The k-th message gets its 250; the client's next command finds the
        connection closed (smtplib raises SMTPServerDisconnected). None clears.
        """
        if k is not None and k < 1:
            raise ValueError("disconnect_after needs k >= 1 (or None)")
        with self._cond:
            self._disconnect_after = k

    def reply_421_after(self, k: int | None) -> None:
        """After k messages in one session, answer MAIL FROM with 421 and close.

        k=0 refuses the first message of every session. None clears.
        """
        if k is not None and k < 0:
            raise ValueError("reply_421_after needs k >= 0 (or None)")
        with self._cond:
            self._reply_421_after = k

    def refuse_senders(
        self, code: int | None = 530, reply: str = "5.7.0 Authentication required"
    ) -> None:
        """Answer every MAIL FROM with ``code`` (a relay that wants a login we
        do not give, or denies relaying); the connection stays open. None
        clears."""
        if code is not None and not 400 <= code < 600:
            raise ValueError("refuse_senders needs a 4xx or 5xx code (or None)")
        with self._cond:
            self._refuse_senders = None if code is None else f"{code} {reply}"

    def delay(self, seconds: float) -> None:
        """Wait this long before answering each DATA (0 for no delay)."""
        if seconds < 0:
            raise ValueError("delay must be >= 0")
        with self._cond:
            self._delay = float(seconds)

    def delay_replies(self, seconds: float, *, greeting: bool = True) -> None:
        """Wait ``seconds`` before every reply of every session: the 220
        greeting (unless ``greeting=False``), EHLO, MAIL, RCPT, DATA's 354 and
        the final reply (a relay far away, or a slow one). 0 clears."""
        if seconds < 0:
            raise ValueError("delay_replies needs seconds >= 0")
        with self._cond:
            self._reply_delay = float(seconds)
            self._delay_greeting = greeting

    def stall_after_data(
        self, seconds: float | None = None, *, times: int | None = None
    ) -> None:
        """Store each message at its final "." but answer only after
        ``seconds`` (``None``: never; the connection stays open until the
        client gives up). ``times=N``: only the next N messages.

        The relay that has the message while the client times out: the case
        that makes a message *in doubt*."""
        if seconds is not None and seconds < 0:
            raise ValueError("stall_after_data needs seconds >= 0 (or None)")
        with self._cond:
            self._stall = _AfterData(seconds, times)

    def reset_after_data(self, *, times: int | None = None) -> None:
        """Store each message at its final "." and close the connection
        without replying (``times=N``: only the next N messages)."""
        with self._cond:
            self._reset = _AfterData(None, times)

    def crash_at_data(self, *, times: int | None = 1) -> None:
        """Fail while storing the message at its final "." (a mailbox that
        cannot be written): aiosmtpd answers 500 and keeps the transaction
        open, as some servers do after an internal error. ``times=N``: the
        next N messages; ``None``: until :meth:`accept_all`."""
        if times is not None and times < 0:
            raise ValueError("times must be None or >= 0")
        with self._cond:
            self._crash_at_data = _AfterData(None, times)

    def silent(self, on: bool = True) -> None:
        """Accept TCP connections but never send the 220 greeting (a relay
        hung, or a firewall that swallows the conversation). Sessions that
        greeted already go on."""
        with self._cond:
            self._silent = on

    def accept_all(self) -> None:
        """Clear every behaviour; received messages are kept."""
        with self._cond:
            self._clear_behaviours()

    # -- real relays' behaviours (issue 11) ------------------------------------

    def relay_trouble(
        self,
        code: int = 452,
        reply: str = "4.3.1 Insufficient system storage",
        *,
        at: str = "mail",
        times: int | None = None,
    ) -> None:
        """Answer ``code`` for the relay's own reasons, as Postfix does while
        its disk is full: at ``MAIL FROM`` (``at="mail"``) or to the final
        "." of DATA (``at="data"``, the message is then not accepted).
        ``times=N`` answers so N times in all, then the relay is fine again;
        ``None`` until :meth:`accept_all`."""
        if at not in ("mail", "data"):
            raise ValueError("relay_trouble(at=...) is 'mail' or 'data'")
        if not 400 <= code < 600:
            raise ValueError("relay_trouble needs a 4xx or 5xx code")
        if times is not None and times < 0:
            raise ValueError("times must be None or >= 0")
        with self._cond:
            self._troubles[at] = _Refusal(code, reply, times)

    def advertise(
        self,
        *,
        size: int | None = None,
        eightbitmime: bool = True,
        smtputf8: bool = True,
        pipelining: bool = True,
    ) -> None:
        """Change the EHLO reply of new sessions: ``SIZE size`` (the server
        still takes bigger messages, so a test sees that the client refused
        on its own), and whether 8BITMIME, SMTPUTF8 and PIPELINING (RFC 2920,
        offered by default as Postfix does; aiosmtpd reads commands in order
        either way) are offered."""
        with self._cond:
            self._advertised_size = size
            self._hidden_extensions = {
                name
                for name, offered in (
                    ("8BITMIME", eightbitmime),
                    ("SMTPUTF8", smtputf8),
                    ("PIPELINING", pipelining),
                )
                if not offered
            }

    def hang_up_at(self, command: str | None, *, times: int | None = 1) -> None:
        """Close the connection without replying when ``command`` (``"mail"``,
        ``"rcpt"`` or ``"data"``, the DATA command itself, before any
        content) arrives: a relay that resets the connection before the
        message's final ".". ``times=N``: the next N times only (``None``:
        always). ``None`` as the command clears."""
        if command is not None and command not in ("mail", "rcpt", "data"):
            raise ValueError("hang_up_at() takes 'mail', 'rcpt', 'data' or None")
        if times is not None and times < 1:
            raise ValueError("times must be None or >= 1")
        with self._cond:
            self._hang_up_at = None if command is None else (command, [times])

    def _hangs_up_at(self, session: _Session, command: str) -> bool:
        """Whether to drop ``session`` now, at ``command`` (see hang_up_at)."""
        with self._cond:
            rule = self._hang_up_at
            if rule is None or rule[0] != command:
                return False
            remaining = rule[1]
            if remaining[0] is not None:
                if remaining[0] <= 0:
                    return False
                remaining[0] -= 1
        session._close_transport()
        return True

    def enable_starttls(self, certfile: str, keyfile: str) -> None:
        """Offer STARTTLS with this certificate (PEM files) on new
        connections. Call after start(); a restart forgets it."""
        import ssl

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(certfile, keyfile)
        if self._controller is None:
            raise RuntimeError("enable_starttls() needs a running server")
        self._controller.SMTP_kwargs["tls_context"] = context

    def _counted_refusal(self, at: str) -> str | None:
        # Called with self._cond held.
        rule = self._troubles.get(at)
        if rule is None or not _applies(rule):
            return None
        return str(rule)

    def _data_refusal(self) -> str | None:
        with self._cond:
            return self._counted_refusal("data")

    def _ehlo_lines(self, responses: list[str]) -> list[str]:
        with self._cond:
            hidden, size = set(self._hidden_extensions), self._advertised_size
        lines = []
        for line in responses:
            keyword = line[4:].split(" ")[0].upper()
            if keyword in hidden:
                continue
            if keyword == "SIZE" and size is not None:
                line = f"{line[:4]}SIZE {size}"
            lines.append(line)
        if "PIPELINING" not in hidden and len(lines) > 1:
            # aiosmtpd does not offer it, though it answers pipelined
            # commands in order (one line at a time from its stream).
            lines.insert(1, "250-PIPELINING")
        return lines

    # -- internals (loop thread) -----------------------------------------------

    def _clear_received(self) -> None:
        self._messages: list[ReceivedEmail] = []
        self._count = 0
        self._counts: collections.Counter[str] = collections.Counter()
        self._connections = 0
        self._first_at: float | None = None
        self._last_at: float | None = None

    def _clear_behaviours(self) -> None:
        self._rejects: dict[str, _Refusal] = {}
        self._defers: dict[str, _Refusal] = {}
        self._disconnect_after: int | None = None
        self._reply_421_after: int | None = None
        self._refuse_senders: str | None = None
        self._delay = 0.0
        self._troubles: dict[str, _Refusal] = {}
        self._hidden_extensions: set[str] = set()
        self._advertised_size: int | None = None
        self._reply_delay = 0.0
        self._delay_greeting = True
        self._stall: _AfterData | None = None
        self._reset: _AfterData | None = None
        self._crash_at_data: _AfterData | None = None
        self._silent = False
        self._hang_up_at: tuple[str, list[int | None]] | None = None

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # proto=IPPROTO_TCP, not 0: asyncio turns Nagle's algorithm off
        # (TCP_NODELAY) only on connections whose socket says TCP. With it on,
        # a second reply written in a burst (a multi-line EHLO, pipelined
        # replies) waits for the client's delayed ACK: about 40 ms each.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            # Rebinding the same port right after stop() must work even though
            # the previous sessions' sockets sit in TIME_WAIT.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
        except BaseException:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        return sock

    async def _close_everything(self, controller: _Controller) -> None:
        if controller.server is not None:
            controller.server.close()
        for session in list(self._live_sessions):
            session._close_transport()
        # connection_lost() runs on a later loop iteration; 100 x 10 ms bound.
        for _ in range(100):
            if not self._live_sessions:
                break
            await asyncio.sleep(0.01)

    def _greeted(self, session: _Session) -> None:
        # Sessions are counted at EHLO/HELO, not at connect: the Controller's
        # own readiness probe connects on every start() and never greets.
        if session.session_id == 0:
            with self._cond:
                self._connections += 1
                session.session_id = self._connections

    @property
    def _sender_refusal(self) -> str | None:
        with self._cond:
            if self._refuse_senders is None:
                return self._counted_refusal("mail")
            return self._refuse_senders

    def _closing_with_421(self, session: _Session) -> bool:
        with self._cond:
            limit = self._reply_421_after
        return limit is not None and session.accepted >= limit

    def _refusal(self, address: str) -> str | None:
        key = address.lower()
        with self._cond:
            rule = self._rejects.get(key)
            if rule is not None:
                return str(rule)
            rule = self._defers.get(key)
            if rule is None or not _applies(rule):
                return None
            return str(rule)

    @property
    def _delay_seconds(self) -> float:
        with self._cond:
            return self._delay

    async def _before_reply(self, session: _Session, status: Any) -> None:
        greeting = session.session_id == 0 and str(
            status if isinstance(status, str) else status.decode("ascii", "replace")
        ).startswith("220 ")
        with self._cond:
            silent = self._silent
            delay = self._reply_delay
            if greeting and not self._delay_greeting:
                delay = 0.0
        if greeting and silent:
            await session.wait_closed_or(None)
            return
        if delay > 0:
            await asyncio.sleep(delay)

    def _crashes_at_data(self) -> bool:
        with self._cond:
            rule = self._crash_at_data
            return rule is not None and _applies(rule)

    def _after_data(self) -> _AfterData | str | None:
        """What to do once a message is stored: "reset", a stall, or None."""
        with self._cond:
            for name in ("_reset", "_stall"):
                rule = getattr(self, name)
                if rule is None or not _applies(rule):
                    continue
                return "reset" if name == "_reset" else rule
        return None

    def _accept(self, session: _Session, envelope: Envelope) -> bool:
        """Record one message; return whether to hang up after replying 250."""
        session.accepted += 1
        received = ReceivedEmail(
            # aiosmtpd spells the null reverse-path (bounces) "<>" (and needs
            # it truthy in the envelope); record it as smtplib and Django do.
            mail_from="" if envelope.mail_from == "<>" else envelope.mail_from or "",
            rcpt_tos=list(envelope.rcpt_tos),
            data=envelope.original_content or b"",
            session_id=session.session_id,
            received_at=time.monotonic(),
            mail_options=list(envelope.mail_options),
            rcpt_options=list(envelope.rcpt_options),
            helo_name=str(getattr(session.session, "host_name", "") or ""),
            received_wall=time.time(),
        )
        with self._cond:
            if self.keep_data:
                self._messages.append(received)
            self._count += 1
            self._counts.update(received.rcpt_tos)
            if self._first_at is None:
                self._first_at = received.received_at
            self._last_at = received.received_at
            hang_up = (
                self._disconnect_after is not None
                and session.accepted >= self._disconnect_after
            )
            self._cond.notify_all()
        if self.on_message is not None:
            try:
                self.on_message(received)
            except Exception:
                logger.exception("on_message callback failed")
        return hang_up
