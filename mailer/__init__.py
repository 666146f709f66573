"""django-mailer-jobs: queue email in the database, send it from cron.

The public API has django-mailer's names and signatures, so switching is an
import change. Imports happen inside the functions: ``import mailer`` loads no
models, and settings can import it.

Every sending function here queues and returns at once; ``manage.py
send_mail`` (or a worker) sends. Each email is built by Django's
``EmailMessage`` (https://docs.djangoproject.com/en/stable/topics/email/),
checked at the door (``mailer.queue.build``) and stored as its RFC 5322
bytes.

``priority`` everywhere is ``"high"``, ``"medium"``, ``"low"`` or
``"deferred"`` (held until ``retry_deferred``), django-mailer's ``1`` to
``4`` (or ``"1"`` to ``"4"``), or ``None`` for ``MAILER_DEFAULT_PRIORITY``;
anything else raises ``ValueError``, even with ``fail_silently``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__version__ = "0.1.0.dev0"

__all__ = [
    "send_mail",
    "send_html_mail",
    "send_mass_mail",
    "mail_admins",
    "mail_managers",
    "get_priority",
]


def send_mail(
    subject: str,
    message: str,
    from_email: str | None,
    recipient_list: Sequence[str],
    priority: str | int | None = None,
    fail_silently: bool = False,
    auth_user: str | None = None,
    auth_password: str | None = None,
) -> int:
    """Queue a plain-text email; return 1 (or 0 if ``fail_silently`` swallowed
    an invalid email). ``auth_user``/``auth_password`` are accepted for
    django-mailer compatibility and ignored: credentials belong to the sending
    backend's settings.

    Django's ``send_mail()`` signature
    (https://docs.djangoproject.com/en/stable/topics/email/#send-mail) plus
    django-mailer's ``priority``; ``from_email`` ``None`` means
    ``DEFAULT_FROM_EMAIL``. All of ``recipient_list`` go in one email.

    :raises mailer.exceptions.InvalidEmail: (unless ``fail_silently``) no
        recipients, an invalid address (``InvalidAddress``), a line break in
        a header (``HeaderInjection``), or more than
        ``MAILER_MAX_MESSAGE_BYTES`` (``MessageTooLarge``). Nothing is queued.
    :raises ValueError: an unknown ``priority``.
    """
    from django.core.mail import EmailMessage

    return _queue(
        [
            EmailMessage(
                subject=subject, body=message, from_email=from_email, to=recipient_list
            )
        ],
        priority,
        fail_silently,
    )


def send_html_mail(
    subject: str,
    message: str,
    message_html: str,
    from_email: str | None,
    recipient_list: Sequence[str],
    priority: str | int | None = None,
    fail_silently: bool = False,
    auth_user: str | None = None,
    auth_password: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> int:
    """Queue an email with a text and an HTML version; return 1 (or 0 if
    ``fail_silently`` swallowed an invalid email).

    django-mailer's ``send_html_mail``: ``message`` is the ``text/plain``
    part and ``message_html`` the ``text/html`` alternative
    (``EmailMultiAlternatives``, RFC 2046 ``multipart/alternative``);
    ``headers`` are extra header fields. Raises as :func:`send_mail`.
    """
    from django.core.mail import EmailMultiAlternatives

    email = EmailMultiAlternatives(
        subject=subject,
        body=message,
        from_email=from_email,
        to=recipient_list,
        headers=dict(headers or {}),
    )
    email.attach_alternative(message_html, "text/html")
    return _queue([email], priority, fail_silently)


def send_mass_mail(
    datatuple: Iterable[tuple[str, str, str | None, Sequence[str]]],
    fail_silently: bool = False,
    auth_user: str | None = None,
    auth_password: str | None = None,
    connection: Any = None,
    priority: str | int | None = None,
) -> int:
    """Queue one email per ``(subject, message, from_email, recipient_list)``;
    all are checked before any is queued. Return how many were queued.

    Django's ``send_mass_mail()`` signature
    (https://docs.djangoproject.com/en/stable/topics/email/#send-mass-mail);
    ``connection`` is accepted and ignored (the queue is the connection).
    Raises as :func:`send_mail`; with ``fail_silently`` an invalid email
    queues none of them and returns 0.
    """
    from django.core.mail import EmailMessage

    emails = [
        EmailMessage(subject=subject, body=body, from_email=sender, to=recipients)
        for subject, body, sender, recipients in datatuple
    ]
    return _queue(emails, priority, fail_silently)


def mail_admins(
    subject: str,
    message: str,
    fail_silently: bool = False,
    connection: Any = None,
    priority: str | int | None = None,
) -> int:
    """Queue an email to ``settings.ADMINS``; return 1, or 0 when ``ADMINS``
    is empty.

    Django's ``mail_admins()``
    (https://docs.djangoproject.com/en/stable/topics/email/#mail-admins):
    ``EMAIL_SUBJECT_PREFIX`` before the subject, ``SERVER_EMAIL`` as the
    sender; ``ADMINS`` entries may be addresses or ``(name, address)`` pairs.
    ``connection`` is accepted and ignored. Raises as :func:`send_mail`.
    """
    return _mail_staff("ADMINS", subject, message, fail_silently, priority)


def mail_managers(
    subject: str,
    message: str,
    fail_silently: bool = False,
    connection: Any = None,
    priority: str | int | None = None,
) -> int:
    """Queue an email to ``settings.MANAGERS``; return 1, or 0 when
    ``MANAGERS`` is empty. As :func:`mail_admins` (Django's
    ``mail_managers()``)."""
    return _mail_staff("MANAGERS", subject, message, fail_silently, priority)


def _mail_staff(
    setting: str,
    subject: str,
    message: str,
    fail_silently: bool,
    priority: str | int | None,
) -> int:
    from email.utils import formataddr

    from django.conf import settings
    from django.core.mail import EmailMessage

    recipients = [
        entry if isinstance(entry, str) else formataddr(tuple(entry))
        for entry in getattr(settings, setting)
    ]
    if not recipients:
        return 0
    email = EmailMessage(
        subject=f"{settings.EMAIL_SUBJECT_PREFIX}{subject}",
        body=message,
        from_email=settings.SERVER_EMAIL,
        to=recipients,
    )
    return _queue([email], priority, fail_silently)


def _queue(emails: list, priority: str | int | None, fail_silently: bool) -> int:
    from mailer.exceptions import InvalidEmail
    from mailer.queue import enqueue_many

    try:
        return len(enqueue_many(emails, priority=priority))
    except InvalidEmail:
        if fail_silently:
            return 0
        raise


def get_priority(priority: str | int | None) -> int:
    """django-mailer's ``mailer.get_priority``: the ``PRIORITY_*`` number (1
    high, 2 medium, 3 low, 4 deferred) for a name, a number, or ``None``
    (medium). Raises ``ValueError`` for anything else."""
    from mailer.legacy.api import get_priority as convert

    return convert(priority)
