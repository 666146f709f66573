"""The single place that knows how to reach the real sending backend, and the
single place that knows which Django version it runs on.

Django 6.1 replaces ``EMAIL_BACKEND``/``get_connection()`` with the ``MAILERS``
setting and ``django.core.mail.mailers``. With ``MAILERS`` defined, the queue
is one alias (usually ``"default"``) and the backend that really sends is
another, named by ``MAILER_SEND_USING``. Without ``MAILERS`` (Django 5.2 and
6.0, or 6.1 in its deprecated mode) ``MAILER_EMAIL_BACKEND`` names the class.
"""

from __future__ import annotations

import email
import email.policy
import smtplib
from collections.abc import Sequence
from email.message import Message as StdlibMessage
from typing import Any

import django
from django.conf import settings as django_settings
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.backends.smtp import EmailBackend as SMTPBackend
from django.utils.module_loading import import_string

from mailer.conf import settings

#: Django 6.0 builds messages with the modern ``email`` API and takes a policy.
MODERN_EMAIL_API = django.VERSION >= (6, 0)


def mailers_configured() -> bool:
    """True when the project uses Django 6.1's ``MAILERS`` setting."""
    return hasattr(mail, "mailers") and hasattr(django_settings, "MAILERS")


def sending_backend_path() -> str:
    """Dotted path of the backend class that really sends (for checks)."""
    if mailers_configured():
        config = django_settings.MAILERS.get(settings.SEND_USING, {})
        return config.get("BACKEND", "django.core.mail.backends.smtp.EmailBackend")
    return settings.EMAIL_BACKEND


def open_sending_backend() -> BaseEmailBackend:
    """A new (not yet opened) instance of the backend that really sends."""
    if mailers_configured():
        return mail.mailers[settings.SEND_USING]
    return import_string(settings.EMAIL_BACKEND)()


def serialize(email_message: mail.EmailMessage) -> tuple[bytes, str]:
    """The RFC 5322 bytes Django's SMTP backend would put on the wire, and the
    message's ``Message-ID``."""
    if MODERN_EMAIL_API:
        message = email_message.message(policy=email.policy.SMTP)
        data = message.as_bytes()
    else:
        message = email_message.message()
        data = message.as_bytes(linesep="\r\n")
    return data, str(message.get("Message-ID", ""))


class SendingConnection:
    """One connection for a whole run, opened lazily, reopened on demand.

    For Django's SMTP backend (and subclasses) the already-built bytes go
    straight to ``smtplib.SMTP.sendmail`` on the backend's own connection: the
    backend still handles host, port, TLS and login, and building a Django
    message per recipient would cost more than sending it (see DESIGN.md).
    Any other backend (an ESP through django-anymail, console, locmem...) gets
    an ``EmailMessage`` rebuilt from the bytes and is called as usual.
    """

    def __init__(self) -> None:
        self.backend: BaseEmailBackend | None = None
        self.opened = 0
        #: Messages accepted since the connection was (re)opened; lets the
        #: engine tell a server refusing service from a message it dislikes.
        self.accepted = 0
        #: The ESP's id for the last message, when the backend reports one
        #: (django-anymail's ``anymail_status.message_id``).
        self.provider_id: str | None = None

    @property
    def is_smtp(self) -> bool:
        return isinstance(self.backend, SMTPBackend)

    def open(self) -> None:
        if self.backend is None:
            self.backend = open_sending_backend()
        if type(self.backend).open is SMTPBackend.open:
            # Django's own open(), plus our HELO name and CA file.
            from mailer.sending.extensions import open_smtp

            open_smtp(self.backend)
        else:
            self.backend.open()
        self.opened += 1
        self.accepted = 0

    def close(self) -> None:
        if self.backend is not None:
            try:
                self.backend.close()
            except (smtplib.SMTPException, OSError):
                # Closing a connection the server already dropped; nothing to save.
                pass

    def reopen(self) -> None:
        self.close()
        self.open()

    def send(
        self, envelope_from: str, recipients: Sequence[str], data: bytes
    ) -> dict[str, tuple[int, bytes]]:
        """Send one message; return the recipients the server refused while
        accepting the others. Raises smtplib/OSError exceptions unchanged, for
        ``outcomes.classify`` to judge."""
        if self.backend is None:
            self.open()
        self.provider_id = None
        if self.is_smtp:
            if self.backend.connection is None:
                self.open()
            from mailer.sending.extensions import mail_options

            smtp = self.backend.connection
            options = mail_options(smtp, data, envelope_from, recipients)
            refused = smtp.sendmail(envelope_from, recipients, data, options)
            self.accepted += 1
            return refused
        email_message = PreparedEmail(data, envelope_from, recipients)
        sent = self.backend.send_messages([email_message])
        if not sent:
            raise smtplib.SMTPException("the email backend reported nothing sent")
        status = getattr(email_message, "anymail_status", None)
        provider_id = getattr(status, "message_id", None)
        self.provider_id = str(provider_id)[:255] if provider_id is not None else None
        self.accepted += 1
        return {}


class PreparedEmail(mail.EmailMultiAlternatives):
    """An already-built message, for backends that take ``EmailMessage`` objects.

    ``message()`` returns the exact stored message, so backends that serialise
    (console, file, SMTP subclasses) send what was queued; the structured
    attributes (subject, body, alternatives, attachments, headers) are filled
    from it for backends that call an API (django-anymail's ESPs).
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
        to = _addresses(parsed, "To")
        cc = _addresses(parsed, "Cc")
        bcc = [r for r in recipients if r not in to and r not in cc]
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
        for part in parsed.walk():
            if part.is_multipart():
                continue
            ctype = part.get_content_type()
            content = part.get_content()
            if isinstance(content, str):
                # Text came off the wire with CRLF line endings; an API-based
                # backend expects Python's own.
                content = content.replace("\r\n", "\n")
            if part.get_filename():
                self.attach(part.get_filename(), content, ctype)
            elif ctype == "text/plain" and not self.body:
                self.body = content
            else:
                self.attach_alternative(content, ctype)

    def message(self, **kwargs: Any) -> StdlibMessage:
        return self._parsed

    def recipients(self) -> list[str]:
        return self._envelope


def _addresses(parsed: StdlibMessage, header: str) -> list[str]:
    value = parsed.get(header)
    if not value:
        return []
    return [str(address) for address in value.addresses]
