"""What differs between the Django versions we support, in one place.

Django 6.0 builds messages with the modern ``email`` API (and takes a
policy). Django 6.1 replaces ``EMAIL_BACKEND``/``get_connection()`` with the
``MAILERS`` setting and ``django.core.mail.mailers``: with ``MAILERS``
defined, the queue is one alias (usually ``"default"``) and the backend that
really sends is another, named by ``MAILER_SEND_USING``. Without ``MAILERS``
(Django 5.2 and 6.0, or 6.1 in its deprecated mode) ``MAILER_EMAIL_BACKEND``
names the class.

Nothing here sends mail; importing it opens no connection.
"""

from __future__ import annotations

import django
from django.conf import settings
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.utils.module_loading import import_string

from mailer.conf import DEFAULT_SENDING_BACKEND, conf

__all__ = [
    "MODERN_EMAIL_API",
    "mailers_configured",
    "sending_backend_path",
    "sending_backend_timeout",
    "open_sending_backend",
]

#: Django 6.0 builds messages with the modern ``email`` API and takes a policy.
MODERN_EMAIL_API = django.VERSION >= (6, 0)


def mailers_configured() -> bool:
    """True when the project uses Django 6.1's ``MAILERS`` setting."""
    return hasattr(mail, "mailers") and hasattr(settings, "MAILERS")


def sending_backend_path() -> str:
    """Dotted path of the backend class that really sends (for checks)."""
    if mailers_configured():
        config = settings.MAILERS.get(conf.MAILER_SEND_USING, {})
        return config.get("BACKEND", DEFAULT_SENDING_BACKEND)
    return conf.MAILER_EMAIL_BACKEND


def sending_backend_timeout() -> float | None:
    """The SMTP timeout the project configured for the sending backend
    (``EMAIL_TIMEOUT``, or the ``MAILERS`` alias's ``OPTIONS["timeout"]``), in
    seconds; ``None`` when it left Django's default (no timeout at all)."""
    if mailers_configured():
        config = settings.MAILERS.get(conf.MAILER_SEND_USING, {})
        return (config.get("OPTIONS") or {}).get("timeout")
    return getattr(settings, "EMAIL_TIMEOUT", None)


def open_sending_backend() -> BaseEmailBackend:
    """A new (not yet opened) instance of the backend that really sends."""
    if mailers_configured():
        return mail.mailers[conf.MAILER_SEND_USING]
    return import_string(conf.MAILER_EMAIL_BACKEND)()
