"""System checks, with stable ids."""

from __future__ import annotations

from typing import Any

from django.core.checks import Error, Tags, Warning, register
from django.utils.module_loading import import_string

from mailer.conf import QUEUE_BACKEND, settings
from mailer.connections import mailers_configured, sending_backend_path


def _is_queue_backend(path: str) -> bool:
    """``path`` names the queue backend, or a subclass of it (a project's own
    ``DbBackend`` with a fixed priority would loop mail just the same)."""
    if path == QUEUE_BACKEND:
        return True
    try:
        backend_class = import_string(path)
    except ImportError:
        # Not ours to report: Django fails loudly when the backend is used.
        return False
    from mailer.backend import DbBackend

    return isinstance(backend_class, type) and issubclass(backend_class, DbBackend)


@register(Tags.compatibility)
def check_sending_backend(app_configs: Any = None, **kwargs: Any) -> list:
    errors = []
    if _is_queue_backend(sending_backend_path()):
        errors.append(
            Error(
                "The mail queue is configured as its own sending backend: "
                "send_mail would queue every email again instead of sending it.",
                hint=(
                    "Point MAILER_SEND_USING at a MAILERS alias whose BACKEND "
                    "really sends (e.g. Django's SMTP backend)."
                    if mailers_configured()
                    else "Set MAILER_EMAIL_BACKEND to a backend that really sends, "
                    "e.g. 'django.core.mail.backends.smtp.EmailBackend'."
                ),
                id="mailer.E001",
            )
        )
    if mailers_configured():
        from django.conf import settings as django_settings

        if settings.SEND_USING not in django_settings.MAILERS:
            errors.append(
                Error(
                    f"MAILER_SEND_USING is {settings.SEND_USING!r}, which is not "
                    "an alias in MAILERS.",
                    hint="Add that alias to MAILERS or set MAILER_SEND_USING.",
                    id="mailer.E002",
                )
            )
    return errors


@register(Tags.database)
def check_site_url(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list:
    """Unsubscribe links need an absolute URL; warn once jobs exist without it.

    Tagged ``database``: Django runs it from ``migrate`` and ``check
    --database``, never touching the database during ordinary checks."""
    if settings.SITE_URL:
        if not settings.SITE_URL.startswith(("https://", "http://")):
            return [
                Error(
                    "MAILER_SITE_URL must be an absolute http(s) URL.",
                    id="mailer.E003",
                )
            ]
        return []
    if not databases:
        return []
    from django.db import DatabaseError

    from mailer.models import MessageJob

    try:
        has_jobs = MessageJob.objects.exists()
    except DatabaseError:
        # Before migrations, or a database that is not reachable during checks.
        return []
    if has_jobs:
        return [
            Warning(
                "MAILER_SITE_URL is not set, so job mail goes out without "
                "one-click unsubscribe links (RFC 8058).",
                hint="Set MAILER_SITE_URL = 'https://news.example.com'.",
                id="mailer.W001",
            )
        ]
    return []


@register(Tags.compatibility)
def check_relay_settings(app_configs: Any = None, **kwargs: Any) -> list:
    """Rate limits that cannot work, and a CA file that is not there, found at
    ``manage.py check`` instead of by the first ``send_mail`` run."""
    import os

    from mailer.sending.quotas import UNITS

    errors = []
    for name, mapping, keys in (
        ("MAILER_RATE_LIMITS", settings.RATE_LIMITS, set(UNITS)),
        ("MAILER_DOMAIN_RATE", settings.DOMAIN_RATE, None),
    ):
        for key, cap in mapping.items():
            if keys is not None and key not in keys:
                errors.append(
                    Error(
                        f"{name} has unknown unit {key!r}.",
                        hint=f"Use {', '.join(UNITS)}.",
                        id="mailer.E020",
                    )
                )
            elif not isinstance(cap, int) or isinstance(cap, bool) or cap < 1:
                errors.append(
                    Error(
                        f"{name}[{key!r}] is {cap!r}; it must be a whole number >= 1.",
                        id="mailer.E020",
                    )
                )
    ca_file = settings.SSL_CA_FILE
    if ca_file and not os.path.isfile(ca_file):
        errors.append(
            Error(
                f"MAILER_SSL_CA_FILE {ca_file!r} is not a file.",
                hint="Point it at the PEM file of the CA that signed the "
                "relay's certificate.",
                id="mailer.E021",
            )
        )
    return errors
