"""Mail settings for a project that queues with django-mailer-jobs and sends
over SMTP, in whichever form the running Django reads.

Django 6.1 configures backends in ``MAILERS``; 5.2 and 6.0 in
``EMAIL_BACKEND`` and ``EMAIL_*``. The test settings, the benchmarks and the
example project all need the same two-way choice, so it is made here once::

    # settings.py
    from mailer.testing.mailconfig import queue_then_smtp

    globals().update(queue_then_smtp("127.0.0.1", 1025))
"""

from __future__ import annotations

import copy
from typing import Any

import django

__all__ = [
    "SENDING_ALIAS",
    "queue_then_smtp",
    "repointed",
    "send_through",
    "set_smtp_timeout",
]

#: The alias of the sending backend in ``MAILERS`` (Django 6.1+).
SENDING_ALIAS = "smtp"


def queue_then_smtp(host: str, port: int, *, timeout: float = 10) -> dict[str, Any]:
    """Settings under which ``send_mail()`` queues (``DbBackend`` is the
    default backend) and ``manage.py send_mail`` delivers to ``host:port``."""
    smtp = "django.core.mail.backends.smtp.EmailBackend"
    if django.VERSION >= (6, 1):
        return {
            "MAILERS": {
                "default": {"BACKEND": "mailer.backend.DbBackend"},
                SENDING_ALIAS: {
                    "BACKEND": smtp,
                    "OPTIONS": {"host": host, "port": port, "timeout": timeout},
                },
            },
            "MAILER_SEND_USING": SENDING_ALIAS,
        }
    return {
        "EMAIL_BACKEND": "mailer.backend.DbBackend",
        "MAILER_EMAIL_BACKEND": smtp,
        "EMAIL_HOST": host,
        "EMAIL_PORT": port,
        "EMAIL_TIMEOUT": timeout,
    }


def repointed(settings: Any, host: str, port: int) -> dict[str, Any]:
    """Overrides that send to ``host:port`` instead, keeping everything else
    of the configured ``settings`` (for ``override_settings`` or a
    subprocess's environment)."""
    if django.VERSION >= (6, 1):
        mailers = copy.deepcopy(settings.MAILERS)
        alias = getattr(settings, "MAILER_SEND_USING", SENDING_ALIAS)
        mailers[alias].setdefault("OPTIONS", {}).update(host=host, port=port)
        return {"MAILERS": mailers}
    return {"EMAIL_HOST": host, "EMAIL_PORT": port}


def send_through(settings: Any, backend: str) -> None:
    """Make ``backend`` (a dotted path) the backend that really sends, in the
    form the running Django reads (``MAILERS`` on 6.1, else
    ``MAILER_EMAIL_BACKEND``); mail is still queued by ``DbBackend``.
    ``settings`` is pytest-django's ``settings`` fixture (or any object whose
    attributes are the settings)."""
    if django.VERSION >= (6, 1) and hasattr(settings, "MAILERS"):
        mailers = copy.deepcopy(settings.MAILERS)
        alias = getattr(settings, "MAILER_SEND_USING", SENDING_ALIAS)
        mailers[alias] = {"BACKEND": backend}
        settings.MAILERS = mailers
    else:
        settings.EMAIL_BACKEND = "mailer.backend.DbBackend"
        settings.MAILER_EMAIL_BACKEND = backend


def set_smtp_timeout(settings: Any, timeout: float | None) -> None:
    """Set the sending backend's SMTP timeout in seconds (``None``: Django's
    default, no timeout), as ``EMAIL_TIMEOUT`` on 5.2/6.0 or the ``MAILERS``
    alias's ``OPTIONS["timeout"]`` on 6.1 (where ``EMAIL_TIMEOUT`` is
    deprecated)."""
    if django.VERSION >= (6, 1) and hasattr(settings, "MAILERS"):
        mailers = copy.deepcopy(settings.MAILERS)
        alias = getattr(settings, "MAILER_SEND_USING", SENDING_ALIAS)
        options = mailers[alias].setdefault("OPTIONS", {})
        if timeout is None:
            options.pop("timeout", None)
        else:
            options["timeout"] = timeout
        settings.MAILERS = mailers
    else:
        settings.EMAIL_TIMEOUT = timeout
