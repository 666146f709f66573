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
    """Django email backend that queues every email instead of sending it.

    Follows Django's email backend API
    (https://docs.djangoproject.com/en/stable/topics/email/#defining-a-custom-email-backend):
    ``send_messages()`` returns how many emails were queued. ``priority``
    (an ``OPTIONS`` entry under ``MAILERS``) overrides
    ``MAILER_BACKEND_PRIORITY`` for this backend.

    An email without recipients is skipped, as Django's SMTP backend does.
    An invalid one raises :class:`mailer.exceptions.InvalidEmail` (or a
    subclass) and none of the batch is queued, whatever ``fail_silently``
    says: the caller learns at once that the email will never go.
    """

    def __init__(self, *, priority: str | int | None = None, **kwargs: Any) -> None:
        # ``priority`` is an OPTIONS entry under MAILERS; everything else goes
        # to Django's base class, which reports unknown options itself.
        super().__init__(**kwargs)
        self.priority = priority

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        """Queue ``email_messages`` (all or none); return how many.

        :raises mailer.exceptions.InvalidEmail: one of them cannot be queued.
        :raises ValueError: the configured priority is unknown.
        """
        from mailer.queue import enqueue_many

        # Django's SMTP backend skips an email without recipients and sends
        # the rest (send_mass_mail() relies on it); do the same rather than
        # refusing the whole batch.
        email_messages = [m for m in email_messages if m.recipients()]
        if not email_messages:
            return 0
        priority = self.priority or conf.MAILER_BACKEND_PRIORITY
        return len(enqueue_many(email_messages, priority=priority))
