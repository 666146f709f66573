"""System checks, with stable ids (Django's system check framework:
https://docs.djangoproject.com/en/stable/topics/checks/).

Every ``MAILER_*`` setting of :mod:`mailer.conf` has one row in
:data:`SETTINGS`: its name, the id its value check reports under, and a
validator. :func:`check_setting_values` runs the table, so a bad value (a
string where seconds belong, an address without a domain) is reported by
``manage.py check`` with the setting's name, the value and what is expected,
instead of surfacing as a traceback in the first ``send_mail`` run. A check
never raises: a validator that fails unexpectedly is reported too.

The other checks look at several settings together (the queue configured as
its own sending backend, the lease against the SMTP timeout, the tasks
framework, the unsubscribe URL). They run only on values the table passed,
so one bad value is reported once, by its own id.

The checks are registered in ``MailerConfig.ready()`` (:mod:`mailer.apps`).
Ids are stable: a site may list one in ``SILENCED_SYSTEM_CHECKS``; a new
setting takes the next free number, a removed one leaves its number unused.
"""

from __future__ import annotations

import inspect
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning
from django.utils.encoding import punycode
from django.utils.module_loading import import_string

from mailer.compat import (
    mailers_configured,
    sending_backend_path,
)
from mailer.conf import QUEUE_BACKEND, conf

__all__ = [
    "SETTINGS",
    "SettingCheck",
    "check_bounces_and_dkim",
    "check_connections",
    "check_django_mailer_settings",
    "check_lease",
    "check_relay_settings",
    "check_sending_backend",
    "check_setting_values",
    "check_site_url",
    "check_tasks",
    "check_unsubscribe_url",
    "check_values",
]

#: A validator takes a setting's value and returns nothing when it is fine;
#: else it raises ``ValueError`` (or ``TypeError``) whose text names the value
#: and what is expected ("0 is not a whole number >= 1").
Validator = Callable[[Any], object]

_UNSET = object()


@dataclass(frozen=True)
class SettingCheck:
    """One row of the settings table.

    :param name: the setting, e.g. ``"MAILER_BATCH_SIZE"``.
    :param check_id: the stable id a bad value is reported under.
    :param validate: a :data:`Validator`.
    :param hint: what to do about a bad value (default: a pointer to the
        README's settings table).
    :param read: reads the setting the way the code does (default: the
        property of :data:`mailer.conf.conf` of the same name); a value the
        validator passed but the reader cannot read is reported too.
    """

    name: str
    check_id: str
    validate: Validator
    hint: str = ""
    read: Callable[[], object] | None = None

    def problem(self) -> str | None:
        """What is wrong with the setting's value, as a phrase naming the value
        and what is expected; ``None`` when it is fine or unset (the default).
        Never raises."""
        value = getattr(settings, self.name, _UNSET)
        if value is _UNSET:
            return None
        try:
            self.validate(value)
        except (TypeError, ValueError) as error:
            return str(error)
        except Exception as error:  # noqa: BLE001 - reported, not raised
            return f"{value!r} cannot be checked ({type(error).__name__}: {error})"
        try:
            if self.read is not None:
                self.read()
            else:
                getattr(conf, self.name)
        except Exception as error:  # noqa: BLE001 - reported, not raised
            return f"{value!r} cannot be read ({type(error).__name__}: {error})"
        return None

    def error(self) -> Error | None:
        """The check message for a bad value, ``None`` for a good one."""
        problem = self.problem()
        if problem is None:
            return None
        return Error(
            f"{self.name}: {problem}.",
            hint=self.hint
            or f"Fix or remove {self.name} (the README's settings table gives "
            "its type, range and default).",
            id=self.check_id,
        )


def check_values(rows: Iterable[SettingCheck]) -> list[CheckMessage]:
    """One ``Error`` per row whose setting holds a bad value."""
    return [error for row in rows if (error := row.error()) is not None]


# -- validators -------------------------------------------------------------------
# Each factory returns a Validator; ``none=True`` lets ``None`` through where
# the README documents it (usually "no limit" or "off").


def _is_number(value: object) -> bool:
    # True == 1 in Python; a bool is a mistake, not a number of seconds.
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def _or_none(expected: str, none: bool) -> str:
    return f"{expected} or None" if none else expected


def number(
    minimum: float = 0, *, above: bool = False, none: bool = False, unit: str = ""
) -> Validator:
    """A finite int or float ``>= minimum`` (``> minimum`` with ``above``),
    e.g. seconds; ``unit`` only words the message."""
    kind = f"a number of {unit}" if unit else "a number"
    expected = _or_none(f"{kind} {'>' if above else '>='} {minimum:g}", none)

    def validate(value: Any) -> None:
        if value is None and none:
            return
        if not _is_number(value) or value < minimum or (above and value == minimum):
            raise ValueError(f"{value!r} is not {expected}")

    return validate


def seconds(minimum: float = 0, *, above: bool = False, none: bool = False):
    """A number of seconds (see :func:`number`)."""
    return number(minimum, above=above, none=none, unit="seconds")


def whole(minimum: int, *, maximum: int | None = None, none: bool = False):
    """An int (not a bool) from ``minimum`` (to ``maximum``)."""
    expected = (
        f"a whole number from {minimum} to {maximum}"
        if maximum is not None
        else f"a whole number >= {minimum}"
    )
    expected = _or_none(expected, none)

    def validate(value: Any) -> None:
        if value is None and none:
            return
        if (
            not isinstance(value, int)
            or isinstance(value, bool)
            or value < minimum
            or (maximum is not None and value > maximum)
        ):
            raise ValueError(f"{value!r} is not {expected}")

    return validate


def boolean() -> Validator:
    """``True`` or ``False`` (0 and 1 pass too). A string does not: the
    string ``"False"`` reads as true."""

    def validate(value: Any) -> None:
        if not (isinstance(value, bool) or (type(value) is int and value in (0, 1))):
            raise ValueError(f"{value!r} is not True or False")

    return validate


def text(*, none: bool = False) -> Validator:
    """A non-empty string."""
    expected = _or_none("a non-empty string", none)

    def validate(value: Any) -> None:
        if value is None and none:
            return
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{value!r} is not {expected}")

    return validate


def dotted_path(*, none: bool = False, is_callable: bool = False) -> Validator:
    """A dotted path that imports (``django.utils.module_loading.import_string``)
    to something callable."""
    expected = _or_none("the dotted path of a class or function", none)

    def validate(value: Any) -> None:
        if value is None and none:
            return
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is not {expected}")
        try:
            imported = import_string(value)
        except ImportError as error:
            raise ValueError(f"{value!r} does not import: {error}") from None
        if is_callable and not callable(imported):
            raise ValueError(f"{value!r} imports {imported!r}, which is not callable")

    return validate


def priority() -> Validator:
    """A priority ``mailer.queue.parse_priority`` accepts (its one owner)."""

    def validate(value: Any) -> None:
        from mailer.queue import parse_priority

        if value is None:
            raise ValueError(
                "None is not a priority: use 'high', 'medium', 'low' or 'deferred'"
            )
        parse_priority(value, "medium")

    return validate


def http_url() -> Validator:
    """An absolute ``http(s)://host`` URL (a path may follow)."""
    expected = "an absolute http(s) URL such as 'https://news.example.com' or None"

    def validate(value: Any) -> None:
        if value is None or value == "":
            return
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is not {expected}")
        try:
            parts = urlsplit(value)
            host = parts.hostname
        except ValueError:
            host = None
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not host:
            raise ValueError(f"{value!r} is not {expected}")

    return validate


def address(*, none: bool = False, plus: bool = True) -> Validator:
    """A bare ``local@domain`` that ``mailer.addresses.addr_spec`` (the one
    owner of address rules) accepts, without a display name; with
    ``plus=False``, no ``+`` in the local part."""
    expected = _or_none(
        "a bare address local@domain" + ("" if plus else " with no '+'"), none
    )

    def validate(value: Any) -> None:
        from mailer.addresses import addr_spec
        from mailer.exceptions import InvalidAddress

        if (value is None or value == "") and none:
            return
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is not {expected}")
        try:
            spec = addr_spec(value)
        except InvalidAddress:
            spec = None
        if spec != value.strip() or (not plus and "+" in spec.rpartition("@")[0]):
            raise ValueError(f"{value!r} is not {expected}")

    return validate


_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def domain(*, none: bool = False, literal: bool = False) -> Validator:
    """A host name (RFC 1123 labels; an internationalised name passes in its
    punycode form, RFC 5890); with ``literal``, also an address literal such
    as ``[192.0.2.1]`` (RFC 5321 4.1.3)."""
    expected = _or_none("a domain name such as 'news.example.com'", none)

    def validate(value: Any) -> None:
        if (value is None or value == "") and none:
            return
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is not {expected}")
        if literal and value.startswith("[") and value.endswith("]"):
            import ipaddress

            try:
                ipaddress.ip_address(value[1:-1].removeprefix("IPv6:"))
            except ValueError:
                raise ValueError(f"{value!r} is not an address literal") from None
            return
        try:
            ascii_name = value if value.isascii() else punycode(value)
        except UnicodeError:
            ascii_name = ""
        labels = ascii_name.split(".")
        if len(ascii_name) > 253 or not all(_LABEL.fullmatch(x) for x in labels):
            raise ValueError(f"{value!r} is not {expected}")

    return validate


def existing_file(*, none: bool = False) -> Validator:
    """The path of a file that exists (as seen by the process running the
    check)."""

    def validate(value: Any) -> None:
        if (value is None or value == "") and none:
            return
        if not isinstance(value, (str, os.PathLike)):
            raise ValueError(f"{value!r} is not the path of a file")
        if not os.path.isfile(value):
            raise ValueError(f"{str(value)!r} is not a file")

    return validate


def duration() -> Validator:
    """A ``timedelta`` or a number of seconds, not negative."""

    def validate(value: Any) -> None:
        if isinstance(value, timedelta):
            if value < timedelta(0):
                raise ValueError(f"{value!r} is negative")
            return
        try:
            number(0, unit="seconds")(value)
        except ValueError as error:
            raise ValueError(f"{error}; or give a timedelta") from None

    return validate


def caps(keys: Iterable[str] | None = None) -> Validator:
    """A dict of whole numbers >= 1 (messages per window or per minute);
    with ``keys``, only those keys."""
    known = tuple(keys) if keys is not None else None
    expected = "a dict of whole numbers >= 1" + (
        f" keyed by {', '.join(repr(k) for k in known)}" if known else ""
    )

    def validate(value: Any) -> None:
        if value is None:
            return
        if not isinstance(value, Mapping):
            raise ValueError(f"{value!r} is not {expected}")
        for key, cap in value.items():
            if known is not None and key not in known:
                raise ValueError(f"{value!r} is not {expected}: unknown key {key!r}")
            if not isinstance(key, str):
                raise ValueError(f"{value!r} is not {expected}: key {key!r}")
            if not isinstance(cap, int) or isinstance(cap, bool) or cap < 1:
                raise ValueError(f"{value!r} is not {expected}: {key!r} is {cap!r}")

    return validate


def imap_config() -> Validator:
    """``MAILER_BOUNCE_IMAP``: empty, or a dict of ``mailer.bounces.readers.
    read_imap``'s keyword arguments with ``host``, ``user`` and ``password``.
    Its messages name the key at fault, never the dict: it holds a
    password."""

    def validate(value: Any) -> None:
        from mailer.bounces.readers import read_imap

        if value is None:
            return
        if not isinstance(value, Mapping):
            raise ValueError(f"a {type(value).__name__} is not a dict")
        if not value:
            return
        known = [p for p in inspect.signature(read_imap).parameters if p != "handle"]
        expected = f"a dict with keys {', '.join(known)}"
        unknown = [repr(key) for key in value if key not in known]
        if unknown:
            raise ValueError(f"unknown key {', '.join(unknown)}; expected {expected}")
        missing = [key for key in ("host", "user", "password") if key not in value]
        if missing:
            raise ValueError(
                f"{', '.join(map(repr, missing))} missing; host, user and "
                "password are needed"
            )
        for key in ("host", "user", "password", "folder"):
            if key in value and not isinstance(value[key], str):
                raise ValueError(f"{key!r} is a {type(value[key]).__name__}, not a str")
        if "port" in value:
            whole(1, maximum=65535)(value["port"])

    return validate


def _connections(value: Any) -> None:
    from mailer.sending.pool import validate_connections

    validate_connections(value)


def _rate_units() -> tuple[str, ...]:
    from mailer.sending.quotas import UNITS

    return tuple(UNITS)


# -- the table ----------------------------------------------------------------
# One row per setting of mailer.conf, in its order. The ids are stable: those
# of the checks that existed before the table (E002, E003, E005, E006, E010,
# E020, E021, E030, E031) stay with their setting; the rest are E2xx,
# numbered in the order of the README's settings table, which lists them all.

SETTINGS: tuple[SettingCheck, ...] = (
    SettingCheck("MAILER_EMAIL_BACKEND", "mailer.E201", dotted_path()),
    SettingCheck("MAILER_SEND_USING", "mailer.E002", text()),
    SettingCheck("MAILER_BACKEND_PRIORITY", "mailer.E202", priority()),
    SettingCheck("MAILER_DEFAULT_PRIORITY", "mailer.E203", priority()),
    SettingCheck("MAILER_MAX_MESSAGE_BYTES", "mailer.E204", whole(1)),
    SettingCheck("MAILER_EMAIL_MAX_BATCH", "mailer.E205", whole(1, none=True)),
    SettingCheck(
        "MAILER_EMAIL_MAX_SECONDS", "mailer.E206", seconds(above=True, none=True)
    ),
    SettingCheck(
        "MAILER_RATE", "mailer.E207", number(unit="messages per second", none=True)
    ),
    SettingCheck("MAILER_EMAIL_THROTTLE", "mailer.E208", seconds(none=True)),
    SettingCheck("MAILER_BATCH_SIZE", "mailer.E218", whole(1)),
    SettingCheck("MAILER_CONNECTIONS", "mailer.E006", _connections),
    SettingCheck(
        "MAILER_LEASE_SECONDS",
        "mailer.E010",
        seconds(above=True, none=True),
        hint="Set it to at least 3 SMTP timeouts, or remove it (the default "
        "grows with the timeout).",
    ),
    SettingCheck("MAILER_SMTP_TIMEOUT", "mailer.E215", seconds(above=True)),
    SettingCheck("MAILER_IN_DOUBT_RETRY_SECONDS", "mailer.E216", seconds()),
    SettingCheck("MAILER_IN_DOUBT_MAX_RETRIES", "mailer.E217", whole(0)),
    SettingCheck("MAILER_MAX_ATTEMPTS", "mailer.E219", whole(1, none=True)),
    SettingCheck("MAILER_MAX_RETRY_SECONDS", "mailer.E220", seconds()),
    # Zero would retry a failing message at once, again and again.
    SettingCheck("MAILER_RETRY_BACKOFF_SECONDS", "mailer.E221", seconds(above=True)),
    SettingCheck(
        "MAILER_RETRY_BACKOFF_MAX_SECONDS", "mailer.E222", seconds(above=True)
    ),
    # Zero would make an idle ``send_mail --loop`` query the database non-stop.
    SettingCheck("MAILER_LOOP_IDLE_SECONDS", "mailer.E223", seconds(above=True)),
    SettingCheck("MAILER_SUPPRESS_ON_NO_SUCH_USER", "mailer.E224", boolean()),
    SettingCheck("MAILER_SENT_BODY_RETENTION_SECONDS", "mailer.E225", seconds()),
    SettingCheck("MAILER_EXPAND_CHUNK_SIZE", "mailer.E230", whole(1)),
    SettingCheck("MAILER_RESEND_GUARD", "mailer.E231", duration()),
    SettingCheck(
        "MAILER_SITE_URL",
        "mailer.E003",
        http_url(),
        hint="Set MAILER_SITE_URL = 'https://news.example.com'.",
    ),
    SettingCheck("MAILER_UNSUBSCRIBE_MAILTO", "mailer.E232", address(none=True)),
    SettingCheck("MAILER_LIST_ID_DOMAIN", "mailer.E233", domain(none=True)),
    SettingCheck(
        "MAILER_RATE_LIMITS",
        "mailer.E020",
        lambda value: caps(_rate_units())(value),
        hint='E.g. MAILER_RATE_LIMITS = {"second": 14, "day": 50000}.',
    ),
    SettingCheck(
        "MAILER_DOMAIN_RATE",
        "mailer.E020",
        caps(),
        hint='E.g. MAILER_DOMAIN_RATE = {"default": 600, "gmail.com": 300}.',
    ),
    SettingCheck("MAILER_RATE_WAIT_SECONDS", "mailer.E234", seconds()),
    SettingCheck("MAILER_RELAY_BACKOFF_SECONDS", "mailer.E235", seconds()),
    SettingCheck("MAILER_RELAY_BACKOFF_MAX_SECONDS", "mailer.E236", seconds()),
    SettingCheck("MAILER_HELO_NAME", "mailer.E237", domain(none=True, literal=True)),
    SettingCheck(
        "MAILER_SSL_CA_FILE",
        "mailer.E021",
        existing_file(none=True),
        hint="Point it at the PEM file of the CA that signed the relay's certificate.",
    ),
    SettingCheck("MAILER_POLL_SECONDS", "mailer.E226", seconds(above=True, none=True)),
    SettingCheck("MAILER_USE_TASKS", "mailer.E227", boolean()),
    SettingCheck(
        "MAILER_TASK_BACKEND",
        "mailer.E005",
        text(),
        hint="Name an alias of TASKS (default: 'default').",
    ),
    SettingCheck("MAILER_TASK_LEASE_SECONDS", "mailer.E228", seconds(above=True)),
    SettingCheck(
        "MAILER_STATUS_MAX_AGE", "mailer.E229", seconds(above=True, none=True)
    ),
    SettingCheck("MAILER_PAUSE_SEND", "mailer.E211", boolean()),
    SettingCheck("MAILER_WRITE_BEHIND", "mailer.E242", boolean()),
    # Zero would end every run before its first message.
    SettingCheck("MAILER_EMAIL_MAX_DEFERRED", "mailer.E209", whole(1, none=True)),
    SettingCheck("MAILER_EMAIL_MAX_RETRIES", "mailer.E210", whole(0, none=True)),
    SettingCheck(
        "MAILER_ERROR_HANDLER",
        "mailer.E212",
        dotted_path(none=True, is_callable=True),
    ),
    SettingCheck("MAILER_EMPTY_QUEUE_SLEEP", "mailer.E213", seconds(none=True)),
    SettingCheck("MAILER_MESSAGES_BATCH_SIZE", "mailer.E214", whole(1, none=True)),
    SettingCheck(
        "MAILER_BOUNCE_ADDRESS",
        "mailer.E031",
        address(none=True, plus=False),
        hint="The VERP token is added after a '+': use e.g. "
        "'bounces@news.example.com'.",
    ),
    SettingCheck("MAILER_SOFT_BOUNCE_LIMIT", "mailer.E238", whole(1)),
    SettingCheck(
        "MAILER_SOFT_BOUNCE_DAYS", "mailer.E239", number(above=True, unit="days")
    ),
    SettingCheck("MAILER_BOUNCE_IMAP", "mailer.E240", imap_config()),
    SettingCheck("MAILER_BOUNCE_MAILDIR", "mailer.E241", text(none=True)),
    # The DKIM settings share E030, as before the table: check_bounces_and_dkim
    # reports the key's contents, a missing domain and an invalid selector
    # under it once a key is set.
    SettingCheck("MAILER_DKIM_KEY_FILE", "mailer.E030", text(none=True)),
    SettingCheck("MAILER_DKIM_SELECTOR", "mailer.E030", text()),
    SettingCheck("MAILER_DKIM_DOMAIN", "mailer.E030", domain(none=True)),
)

_BY_NAME = {row.name: row for row in SETTINGS}


def _fine(*names: str) -> bool:
    """Whether these settings hold good values (or are unset), so a check that
    reads them through ``conf`` does not raise, and a bad value is reported
    once, by its own row."""
    return all(_BY_NAME[name].problem() is None for name in names)


def check_setting_values(app_configs: Any = None, **kwargs: Any) -> list:
    """Every ``MAILER_*`` setting's type and range (the :data:`SETTINGS`
    table)."""
    return check_values(SETTINGS)


# -- checks across settings -----------------------------------------------------


def _is_queue_backend(path: str) -> bool:
    """``path`` names the queue backend, or a subclass of it (a project's own
    ``DbBackend`` with a fixed priority would loop mail just the same)."""
    if path == QUEUE_BACKEND:
        return True
    try:
        backend_class = import_string(path)
    except ImportError:
        # Reported by its own check (MAILER_EMAIL_BACKEND, mailer.E201), or
        # Django's (MAILERS) when the backend is used.
        return False
    from mailer.backend import DbBackend

    return isinstance(backend_class, type) and issubclass(backend_class, DbBackend)


def check_sending_backend(app_configs: Any = None, **kwargs: Any) -> list:
    """The backend that really sends is not the queue itself (``mailer.E001``),
    and with Django 6.1's ``MAILERS``, ``MAILER_SEND_USING`` names one of its
    aliases (``mailer.E002``)."""
    if not _fine("MAILER_EMAIL_BACKEND", "MAILER_SEND_USING"):
        return []
    errors = []
    try:
        queue_sends = _is_queue_backend(sending_backend_path())
    except (AttributeError, KeyError, TypeError, ValueError):
        # MAILERS is Django's setting; Django reports its shape when used.
        queue_sends = False
    if queue_sends:
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
        if conf.MAILER_SEND_USING not in settings.MAILERS:
            errors.append(
                Error(
                    f"MAILER_SEND_USING is {conf.MAILER_SEND_USING!r}, which is not "
                    "an alias in MAILERS.",
                    hint="Add that alias to MAILERS or set MAILER_SEND_USING.",
                    id="mailer.E002",
                )
            )
    return errors


def check_site_url(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list:
    """Unsubscribe links need an absolute URL; warn once jobs exist without it
    (``mailer.W001``). The URL's form is the table's (``mailer.E003``).

    Tagged ``database``: Django runs it from ``migrate`` and ``check
    --database``, never touching the database during ordinary checks."""
    if not databases or not _fine("MAILER_SITE_URL") or conf.MAILER_SITE_URL:
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


def check_relay_settings(app_configs: Any = None, **kwargs: Any) -> list:
    """The relay settings' rows of the table (``MAILER_RATE_LIMITS``,
    ``MAILER_DOMAIN_RATE``: ``mailer.E020``; ``MAILER_SSL_CA_FILE``:
    ``mailer.E021``) on their own; not registered, since
    :func:`check_setting_values` runs them."""
    return check_values(
        _BY_NAME[name]
        for name in ("MAILER_RATE_LIMITS", "MAILER_DOMAIN_RATE", "MAILER_SSL_CA_FILE")
    )


def check_unsubscribe_url(app_configs: Any = None, **kwargs: Any) -> list:
    """With ``MAILER_SITE_URL`` set, job mail carries an unsubscribe link; it
    needs the view's URL. Without it mail still goes out, without the link
    (``send_mail`` logs the same warning)."""
    if not _fine("MAILER_SITE_URL") or not conf.MAILER_SITE_URL:
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


def check_tasks(app_configs: Any = None, **kwargs: Any) -> list:
    """``MAILER_USE_TASKS`` needs the tasks framework and a backend that runs
    tasks elsewhere: Django's default, ``ImmediateBackend``, would send the
    whole queue inside the web request that queued one email."""
    if not _fine("MAILER_USE_TASKS", "MAILER_TASK_BACKEND") or not (
        conf.MAILER_USE_TASKS
    ):
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


def check_lease(app_configs: Any = None, **kwargs: Any) -> list:
    """``MAILER_LEASE_SECONDS`` must be at least 3 SMTP timeouts.

    A worker starts a message only while its lease outlasts the message's
    time budget (one SMTP timeout), renewing first if needed; with a lease
    shorter than a few timeouts it would renew before nearly every message,
    and a lease shorter than one would let a second worker take a message
    that is still on the wire (the duplicates of issue 11)."""
    if not _fine("MAILER_LEASE_SECONDS", "MAILER_SMTP_TIMEOUT", "MAILER_SEND_USING"):
        return []
    try:
        timeout = conf.effective_smtp_timeout
        lease = conf.MAILER_LEASE_SECONDS
    except (AttributeError, TypeError, ValueError) as error:
        # EMAIL_TIMEOUT (or the MAILERS alias's timeout) is Django's setting,
        # which Django does not check.
        return [
            Error(
                f"MAILER_LEASE_SECONDS cannot be compared with the SMTP timeout: "
                f"{error}.",
                hint="Set EMAIL_TIMEOUT (or the MAILERS alias's timeout) to a "
                "number of seconds.",
                id="mailer.E010",
            )
        ]
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


def check_connections(app_configs: Any = None, **kwargs: Any) -> list:
    """The ``MAILER_CONNECTIONS`` row of the table (``mailer.E006``) on its own;
    not registered, since :func:`check_setting_values` runs it."""
    return check_values([_BY_NAME["MAILER_CONNECTIONS"]])


#: django-mailer settings that have no use here, and why (ids are stable).
DJANGO_MAILER_UNNEEDED = {
    "MAILER_USE_FILE_LOCK": "mailer.W131",
    "MAILER_LOCK_PATH": "mailer.W131",
    "MAILER_LOCK_WAIT_TIMEOUT": "mailer.W131",
    "MAILER_EMAIL_LOG_MESSAGE_DATA": "mailer.W132",
}


def check_django_mailer_settings(app_configs: Any = None, **kwargs: Any) -> list:
    """Name the django-mailer settings a switched site still sets that mean
    nothing here, and say why (every other django-mailer setting is honoured
    with its meaning; see the README's "Switching from django-mailer")."""
    messages = []
    locks = [
        name
        for name, check_id in DJANGO_MAILER_UNNEEDED.items()
        if check_id == "mailer.W131" and hasattr(settings, name)
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
    if getattr(settings, "MAILER_EMAIL_LOG_MESSAGE_DATA", False):
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


def check_bounces_and_dkim(app_configs: Any = None, **kwargs: Any) -> list:
    """The DKIM key loads, with a domain and a valid selector, and the
    ``[dkim]`` extra is installed (issue 18; ``mailer.E030``). With a bounce
    setting set, the ``[bounces]`` extra is installed (``mailer.W031``). The
    bounce address's form is the table's (``mailer.E031``)."""
    messages: list[CheckMessage] = []
    if _fine("MAILER_DKIM_KEY_FILE", "MAILER_DKIM_SELECTOR", "MAILER_DKIM_DOMAIN"):
        from mailer.sending.dkim import check_settings

        messages += [Error(problem, id="mailer.E030") for problem in check_settings()]
    bounces = ("MAILER_BOUNCE_ADDRESS", "MAILER_BOUNCE_IMAP", "MAILER_BOUNCE_MAILDIR")
    if _fine(*bounces) and any(getattr(conf, name) for name in bounces):
        from django.core.exceptions import ImproperlyConfigured

        from mailer.bounces.parse import require

        try:
            require()
        except ImproperlyConfigured as error:
            # A warning, not an error: mail still goes out (VERP needs no
            # library); only process_bounces stops, naming the extra.
            messages.append(
                Warning(
                    f"A bounce setting is set, but process_bounces cannot run: "
                    f"{error}.",
                    hint="Install the extra, or remove MAILER_BOUNCE_ADDRESS, "
                    "MAILER_BOUNCE_IMAP and MAILER_BOUNCE_MAILDIR.",
                    id="mailer.W031",
                )
            )
    return messages
