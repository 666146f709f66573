"""System checks, with stable ids."""

from __future__ import annotations

from typing import Any

from django.core.checks import Error, Tags, Warning, register
from django.utils.module_loading import import_string

from mailer.compat import (
    mailers_configured,
    sending_backend_path,
)
from mailer.conf import QUEUE_BACKEND, conf

__all__ = [
    "check_sending_backend",
    "check_site_url",
    "check_relay_settings",
    "check_unsubscribe_url",
    "check_tasks",
    "check_lease",
    "check_connections",
    "check_django_mailer_settings",
    "check_bounces_and_dkim",
]


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
    """``mailer.E001``: the sending backend is not the queue itself (or a
    subclass), which would queue every email again instead of sending it.
    ``mailer.E002``: with Django 6.1's ``MAILERS``, ``MAILER_SEND_USING``
    names one of its aliases. A Django system check
    (https://docs.djangoproject.com/en/stable/topics/checks/)."""
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

        if conf.MAILER_SEND_USING not in django_settings.MAILERS:
            errors.append(
                Error(
                    f"MAILER_SEND_USING is {conf.MAILER_SEND_USING!r}, which is not "
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
    if conf.MAILER_SITE_URL:
        if not conf.MAILER_SITE_URL.startswith(("https://", "http://")):
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
        ("MAILER_RATE_LIMITS", conf.MAILER_RATE_LIMITS, set(UNITS)),
        ("MAILER_DOMAIN_RATE", conf.MAILER_DOMAIN_RATE, None),
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
    ca_file = conf.MAILER_SSL_CA_FILE
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


@register(Tags.urls)
def check_unsubscribe_url(app_configs: Any = None, **kwargs: Any) -> list:
    """With ``MAILER_SITE_URL`` set, job mail carries an unsubscribe link; it
    needs the view's URL. Without it mail still goes out, without the link
    (``send_mail`` logs the same warning)."""
    if not conf.MAILER_SITE_URL:
        return []
    from mailer.unsubscribe.tokens import unsubscribe_path

    _path, problem = unsubscribe_path()
    if problem is None:
        return []
    return [
        Warning(
            f"Job mail goes out without one-click unsubscribe links: {problem}.",
            hint="Set ROOT_URLCONF and add path('mail/', include('mailer.urls')) "
            "to it.",
            id="mailer.W002",
        )
    ]


@register(Tags.compatibility)
def check_tasks(app_configs: Any = None, **kwargs: Any) -> list:
    """``MAILER_USE_TASKS`` needs the tasks framework and a backend that runs
    tasks elsewhere: Django's default, ``ImmediateBackend``, would send the
    whole queue inside the web request that queued one email."""
    if not conf.MAILER_USE_TASKS:
        return []
    try:
        from mailer.worker.tasks import task_backend

        backend = task_backend()
    except ImportError as error:
        return [
            Error(
                f"MAILER_USE_TASKS is on, but {error}",
                hint="pip install 'django-mailer-jobs[tasks]' (Django 5.2), or "
                "use Django 6.0+.",
                id="mailer.E004",
            )
        ]
    except Exception as error:  # noqa: BLE001 - reported, not raised
        return [
            Error(
                f"MAILER_USE_TASKS is on, but the task backend "
                f"{conf.MAILER_TASK_BACKEND!r} cannot be loaded: {error}",
                hint="Configure it in TASKS, or set MAILER_TASK_BACKEND.",
                id="mailer.E005",
            )
        ]
    if type(backend).__name__ in ("ImmediateBackend", "DummyBackend"):
        return [
            Warning(
                f"MAILER_USE_TASKS is on with {type(backend).__name__}: the mail "
                "tasks "
                + (
                    "run inside the request that queues the mail."
                    if type(backend).__name__ == "ImmediateBackend"
                    else "are stored and never run."
                ),
                hint="Use a backend with a worker, e.g. "
                "'django_tasks_db.DatabaseBackend' and 'manage.py db_worker'.",
                id="mailer.W003",
            )
        ]
    return []


#: A lease must outlast this many SMTP timeouts (see ``check_lease``).
LEASE_TIMEOUTS = 3


@register(Tags.compatibility)
def check_lease(app_configs: Any = None, **kwargs: Any) -> list:
    """``MAILER_LEASE_SECONDS`` must be at least 3 SMTP timeouts.

    A worker starts a message only while its lease outlasts the message's
    time budget (one SMTP timeout), renewing first if needed; with a lease
    shorter than a few timeouts it would renew before nearly every message,
    and a lease shorter than one would let a second worker take a message
    that is still on the wire and send it a second time."""
    timeout = conf.effective_smtp_timeout
    lease = conf.MAILER_LEASE_SECONDS
    if lease < LEASE_TIMEOUTS * timeout:
        return [
            Error(
                f"MAILER_LEASE_SECONDS is {lease:g}, shorter than "
                f"{LEASE_TIMEOUTS} SMTP timeouts ({LEASE_TIMEOUTS} x {timeout:g} s): "
                "a message could still be on the wire when another worker "
                "takes it over.",
                hint=(
                    f"Set MAILER_LEASE_SECONDS to at least "
                    f"{LEASE_TIMEOUTS * timeout:g}, or lower EMAIL_TIMEOUT "
                    "(MAILER_SMTP_TIMEOUT when EMAIL_TIMEOUT is unset)."
                ),
                id="mailer.E010",
            )
        ]
    return []


@register(Tags.compatibility)
def check_connections(app_configs: Any = None, **kwargs: Any) -> list:
    """``MAILER_CONNECTIONS`` must be a number of connections the pool drives."""
    from mailer.sending.pool import validate_connections

    try:
        validate_connections(conf.MAILER_CONNECTIONS)
    except ValueError as error:
        return [Error(f"MAILER_CONNECTIONS: {error}.", id="mailer.E006")]
    return []


#: django-mailer settings that have no use here, and why (ids are stable).
DJANGO_MAILER_UNNEEDED = {
    "MAILER_USE_FILE_LOCK": "mailer.W131",
    "MAILER_LOCK_PATH": "mailer.W131",
    "MAILER_LOCK_WAIT_TIMEOUT": "mailer.W131",
    "MAILER_EMAIL_LOG_MESSAGE_DATA": "mailer.W132",
}


@register(Tags.compatibility)
def check_django_mailer_settings(app_configs: Any = None, **kwargs: Any) -> list:
    """Name the django-mailer settings a switched site still sets that mean
    nothing here, and say why (every other django-mailer setting is honoured
    with its meaning; see the README's "Switching from django-mailer")."""
    from django.conf import settings as django_settings

    messages = []
    locks = [
        name
        for name, check_id in DJANGO_MAILER_UNNEEDED.items()
        if check_id == "mailer.W131" and hasattr(django_settings, name)
    ]
    if locks:
        messages.append(
            Warning(
                f"{', '.join(locks)} {'is' if len(locks) == 1 else 'are'} "
                "django-mailer's lock-file setting(s) and have no effect: "
                "send_mail claims messages with database leases, so any number "
                "of workers on any number of hosts run without a lock file and "
                "never send a message twice.",
                hint="Remove the setting(s); MAILER_LEASE_SECONDS sets the lease.",
                id="mailer.W131",
            )
        )
    if getattr(django_settings, "MAILER_EMAIL_LOG_MESSAGE_DATA", False):
        messages.append(
            Warning(
                "MAILER_EMAIL_LOG_MESSAGE_DATA is true, but the mail log never "
                "keeps message bodies: a password-reset link in a log is a live "
                "credential. The log keeps recipient, subject, Message-ID, "
                "result and the server's reply.",
                hint="Remove the setting (or set it to False, which is what "
                "happens anyway).",
                id="mailer.W132",
            )
        )
    return messages


@register(Tags.compatibility)
def check_bounces_and_dkim(app_configs: Any = None, **kwargs: Any) -> list:
    """The DKIM key loads, and the bounce address is local@domain."""
    from mailer.conf import conf
    from mailer.sending.dkim import check_settings

    errors = [Error(problem, id="mailer.E030") for problem in check_settings()]
    address = conf.MAILER_BOUNCE_ADDRESS
    if address and (address.count("@") != 1 or "+" in address.split("@")[0]):
        errors.append(
            Error(
                f"MAILER_BOUNCE_ADDRESS {address!r} must be local@domain with no "
                "'+' (the VERP token is added after a '+').",
                id="mailer.E031",
            )
        )
    return errors
