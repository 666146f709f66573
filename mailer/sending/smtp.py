"""The single place that opens the connection that really sends, and hands
one message to it.

Django-version differences live in ``mailer.compat`` (re-exported here for
code that imported them from this module); one message's SMTP exchange lives
in ``mailer.sending.transport``.
"""

from __future__ import annotations

import smtplib
import time
from collections.abc import Callable, Sequence

from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.backends.smtp import EmailBackend as SMTPBackend

from mailer.compat import (  # noqa: F401 - re-exported for older imports
    MODERN_EMAIL_API,
    mailers_configured,
    open_sending_backend,
    sending_backend_path,
    sending_backend_timeout,
)
from mailer.conf import conf
from mailer.sending import extensions, transport

# PreparedEmail and serialize live in mailer/sending/message.py; imported
# here too, for code that imports them from this module.
from mailer.sending.message import PreparedEmail, serialize  # noqa: F401

__all__ = ["SendingConnection"]


class SendingConnection:
    """One connection for a whole run, opened lazily, reopened on demand.

    For Django's SMTP backend (and subclasses) the already-built bytes go
    over the backend's own ``smtplib`` connection through
    ``transport.exchange`` (MAIL, RCPT, DATA, staged, so a failure after the
    final "." is told apart): the backend still handles host, port, TLS and
    login, and building a Django message per recipient would cost more than
    sending it (the README's "Performance" section has the figures). Any
    other backend (an ESP through django-anymail, console, locmem...) gets an
    ``EmailMessage`` rebuilt from the bytes and is called as usual.

    Time is bounded: when the project leaves ``EMAIL_TIMEOUT`` (or its
    ``MAILERS`` alias's timeout) unset, ``MAILER_SMTP_TIMEOUT`` applies to
    connecting and to every reply, and the whole of one message (connecting
    included) gets one budget (:meth:`budget`).
    """

    #: Upload rate (bytes per second) granted to a message's content on top
    #: of one timeout: 10 MiB get 10 s more, a 20 kB newsletter 0.02 s.
    MIN_UPLOAD_RATE = 1024 * 1024

    def __init__(self) -> None:
        self.backend: BaseEmailBackend | None = None
        self.opened = 0
        #: Messages accepted since the connection was (re)opened; lets the
        #: engine tell a server refusing service from a message it dislikes.
        self.accepted = 0
        #: The ESP's id for the last message, when the backend reports one
        #: (django-anymail's ``anymail_status.message_id``).
        self.provider_id: str | None = None
        #: ESMTP parameters for MAIL FROM and RCPT TO of the next message
        #: (``BODY=8BITMIME``, ``SMTPUTF8``, ``SIZE=n``), set by the caller.
        self.mail_options: list[str] = []
        self.rcpt_options: list[str] = []
        self._timeout = conf.effective_smtp_timeout

    @property
    def is_smtp(self) -> bool:
        """True for Django's SMTP backend (or a subclass): the bytes go over
        its ``smtplib`` connection, staged (``transport.exchange``)."""
        return isinstance(self.backend, SMTPBackend)

    @property
    def timeout(self) -> float:
        """Seconds to wait for a connection or one reply."""
        return self._timeout

    @property
    def where(self) -> str:
        """``host:port`` of an SMTP relay, for error messages."""
        if self.is_smtp:
            return f"{self.backend.host}:{self.backend.port}"
        return "the mail server"

    @property
    def is_open(self) -> bool:
        """True once opened and, for SMTP, while the connection is held."""
        if self.backend is None:
            return False
        return not self.is_smtp or self.backend.connection is not None

    def budget(self, size: int) -> float:
        """Seconds one message of ``size`` bytes may take in all: one timeout
        plus its upload at ``MIN_UPLOAD_RATE``."""
        return self.timeout + size / self.MIN_UPLOAD_RATE

    def open(self, deadline: float | None = None) -> None:
        """Connect (and greet, start TLS, log in), within ``deadline``
        (``time.monotonic()``) when given, else within one timeout.

        :raises OSError: and smtplib's errors, as the backend raises them.
        """
        if self.backend is None:
            self.backend = open_sending_backend()
        if self.is_smtp:
            configured = self.backend.timeout
            if configured is not None:
                self._timeout = configured
            wait = self.timeout
            if deadline is not None:
                wait = max(transport.MIN_WAIT, min(wait, deadline - time.monotonic()))
            # Django's backend passes its ``timeout`` to smtplib, which uses
            # it for the TCP connect and every reply until the next change.
            self.backend.timeout = wait
            try:
                if type(self.backend).open is SMTPBackend.open:
                    # Django's own open(), plus our HELO name and CA file.
                    extensions.open_smtp(self.backend)
                else:
                    self.backend.open()
            finally:
                self.backend.timeout = configured
        else:
            self.backend.open()
        self.opened += 1
        self.accepted = 0

    def close(self) -> None:
        """Close the backend's connection; never raises for a connection the
        server already dropped."""
        if self.backend is not None:
            try:
                self.backend.close()
            except (smtplib.SMTPException, OSError):
                # Closing a connection the server already dropped; nothing to save.
                pass
            if self.is_smtp:
                self.backend.connection = None

    def send(
        self,
        envelope_from: str,
        recipients: Sequence[str],
        data: bytes,
        *,
        deadline: float | None = None,
        before_content: Callable[[], None] | None = None,
    ) -> dict[str, tuple[int, bytes]]:
        """Send one message; return the recipients the server refused while
        accepting the others.

        :param deadline: ``time.monotonic()`` by which the relay's final
            reply must have come (default: one :meth:`budget` from now).
        :raises transport.InDoubt: no reply after the final "." was sent.
        :raises transport.ExchangeTimeout: the budget ran out before it.
        :raises smtplib.SMTPException, OSError: unchanged, for
            ``outcomes.classify`` to judge.

        ``before_content`` is called right before the content is handed
        over: after DATA's 354 on SMTP (see ``transport.exchange``), before
        ``send_messages()`` on another backend.
        """
        if self.backend is None:
            self.open(deadline)
        self.provider_id = None
        if self.is_smtp:
            if self.backend.connection is None:
                self.open(deadline)
            budget = self.budget(len(data))
            if deadline is None:
                deadline = time.monotonic() + budget
            smtp = self.backend.connection
            # EHLO first (within the deadline): what the relay offers decides
            # the MAIL FROM parameters (BODY=8BITMIME, SMTPUTF8) and whether
            # the message is too big for it; the transport adds SIZE= itself.
            if smtp.ehlo_resp is None and smtp.helo_resp is None:
                transport.greet(smtp, deadline=deadline, budget=self.timeout)
            options = extensions.mail_options(smtp, data, envelope_from, recipients)
            if self.mail_options:
                # The backend's own parameters first, ours where they are new.
                given = [*self.mail_options]
                taken = {g.upper() for g in given}
                options = given + [o for o in options if o.upper() not in taken]
            done = transport.exchange(
                smtp,
                envelope_from,
                recipients,
                data,
                deadline=deadline,
                budget=self.timeout,
                mail_options=options,
                rcpt_options=self.rcpt_options,
                before_content=before_content,
            )
            self.accepted += 1
            return done.refused
        email_message = PreparedEmail(data, envelope_from, recipients)
        if before_content is not None:
            before_content()
        sent = self.backend.send_messages([email_message])
        # Django's own callers (send_mail, mail_admins) ignore the return
        # value, and several third-party backends return None after sending:
        # None is "sent". 0 (or another false number) without an exception is
        # the backend saying it sent nothing (fail_silently): retry later.
        # (django-mailer counted None as sent too; its own test backends return it.)
        if sent is not None and not sent:
            raise smtplib.SMTPException("the email backend reported nothing sent")
        status = getattr(email_message, "anymail_status", None)
        provider_id = getattr(status, "message_id", None)
        self.provider_id = str(provider_id)[:255] if provider_id is not None else None
        self.accepted += 1
        return {}
