"""A Django email backend that queues instead of sending.

Django 5.2/6.0::

    EMAIL_BACKEND = "mailer.backend.DbBackend"
    MAILER_EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"

Django 6.1 (``MAILERS``)::

    MAILERS = {
        "default": {"BACKEND": "mailer.backend.DbBackend"},
        "smtp": {"BACKEND": "django.core.mail.backends.smtp.EmailBackend",
                 "OPTIONS": {"host": "mail.example.com", "port": 587, ...}},
    }
    MAILER_SEND_USING = "smtp"

Mail queued this way (password resets, registration) gets
``MAILER_BACKEND_PRIORITY`` (default high), so it overtakes a newsletter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend

from mailer.conf import conf

__all__ = ["DbBackend"]


class DbBackend(BaseEmailBackend):
    def __init__(self, *, priority: str | int | None = None, **kwargs: Any) -> None:
        # ``priority`` is an OPTIONS entry under MAILERS; everything else goes
        # to Django's base class, which reports unknown options itself.
        super().__init__(**kwargs)
        self.priority = priority

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        from mailer.queue import enqueue_many

        # Django's SMTP backend skips an email without recipients and sends
        # the rest (send_mass_mail() relies on it); do the same rather than
        # refusing the whole batch.
        email_messages = [m for m in email_messages if m.recipients()]
        if not email_messages:
            return 0
        priority = self.priority or conf.MAILER_BACKEND_PRIORITY
        return len(enqueue_many(email_messages, priority=priority))
