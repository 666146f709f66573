"""Every ``MAILER_*`` setting, its type and its default, in one place.

Each property reads ``django.conf.settings`` at access time, so
``override_settings`` works in tests and nothing is frozen at import. The
README documents the same list; keep the two in step.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings as django_settings
from django.core.signals import setting_changed

__all__ = ["DEFAULT_SENDING_BACKEND", "QUEUE_BACKEND", "MailerSettings", "conf"]

DEFAULT_SENDING_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
QUEUE_BACKEND = "mailer.backend.DbBackend"
#: See ``MailerSettings.CONNECTIONS`` and the measurement in
#: ``mailer/sending/pool.py``.
DEFAULT_CONNECTIONS = 4

_UNSET = object()


class MailerSettings:
    """Every ``MAILER_*`` setting, its type and its default, read from
    ``django.conf.settings`` at each access (so ``override_settings`` works),
    in the manner of django-cors-headers' ``conf.py``. Each property is named
    exactly as its setting; ``*_SECONDS`` values are float seconds. Use the
    instance :data:`conf`; values are validated by system checks
    (``mailer.checks``), not here."""

    def __init__(self) -> None:
        #: Names Django's settings do not define. Django's ``LazySettings``
        #: caches the names a project sets, but reading an unset one goes
        #: its whole missing-attribute path (an ``AttributeError`` raised and
        #: caught) every time, and the send loop reads several per message.
        #: Forgotten on ``setting_changed`` (``override_settings``,
        #: pytest-django's ``settings`` fixture).
        self._unset: set[str] = set()

    def _get(self, name: str, default: Any) -> Any:
        if name in self._unset:
            return default
        value = getattr(django_settings, name, _UNSET)
        if value is _UNSET:
            self._unset.add(name)
            return default
        return value

    def forget(self, name: str | None = None) -> None:
        """Read ``name`` (every name when ``None``) from Django's settings
        again at its next access. Connected to Django's ``setting_changed``
        signal; call it after changing ``django.conf.settings`` by other
        means."""
        if name is None:
            self._unset.clear()
        else:
            self._unset.discard(name)

    # -- what actually sends -------------------------------------------------

    @property
    def MAILER_EMAIL_BACKEND(self) -> str:
        """Dotted path of the Django email backend that really sends (5.2/6.0
        style, or 6.1 without ``MAILERS``). Any ESP backend works."""
        return self._get("MAILER_EMAIL_BACKEND", DEFAULT_SENDING_BACKEND)

    @property
    def MAILER_SEND_USING(self) -> str:
        """With Django 6.1's ``MAILERS``: the alias of the mailer that really
        sends (the queue itself is usually ``"default"``)."""
        return self._get("MAILER_SEND_USING", "smtp")

    # -- queueing -------------------------------------------------------------

    @property
    def MAILER_BACKEND_PRIORITY(self) -> str:
        """Priority of mail queued through ``mailer.backend.DbBackend``: high, so
        Django's password-reset and registration emails overtake newsletters."""
        return self._get("MAILER_BACKEND_PRIORITY", "high")

    @property
    def MAILER_DEFAULT_PRIORITY(self) -> str:
        """Priority of ``mailer.send_mail()`` and friends when none is given
        (django-mailer's default)."""
        return self._get("MAILER_DEFAULT_PRIORITY", "medium")

    @property
    def MAILER_MAX_MESSAGE_BYTES(self) -> int:
        """Largest message (RFC 5322 bytes) accepted into the queue."""
        return int(self._get("MAILER_MAX_MESSAGE_BYTES", 10 * 1024 * 1024))

    # -- the send loop ----------------------------------------------------------

    @property
    def MAILER_EMAIL_MAX_BATCH(self) -> int | None:
        """Most messages one ``send_mail`` run sends (``None``: no limit)."""
        return self._get("MAILER_EMAIL_MAX_BATCH", None)

    @property
    def MAILER_EMAIL_MAX_SECONDS(self) -> float | None:
        """Longest one ``send_mail`` run keeps claiming new batches."""
        return self._get("MAILER_EMAIL_MAX_SECONDS", None)

    @property
    def MAILER_RATE(self) -> float | None:
        """Most messages per second one worker sends (``None``: as fast as the
        server takes them)."""
        return self._get("MAILER_RATE", None)

    @property
    def MAILER_EMAIL_THROTTLE(self) -> float:
        """django-mailer's setting, with its meaning: seconds to pause after
        each message (0: no pause). Not a rate: ``MAILER_RATE`` is ours."""
        return float(self._get("MAILER_EMAIL_THROTTLE", 0) or 0)

    @property
    def MAILER_BATCH_SIZE(self) -> int:
        """Messages claimed at once. Small, so that high-priority mail queued
        meanwhile is claimed by the very next batch."""
        return int(self._get("MAILER_BATCH_SIZE", 100))

    @property
    def MAILER_CONNECTIONS(self) -> int:
        """SMTP connections one ``send_mail`` run drives at once (1 to
        ``mailer.sending.pool.MAX_CONNECTIONS``). Parallel connections hide a
        distant relay's latency; 1 sends everything over one connection."""
        return self._get("MAILER_CONNECTIONS", DEFAULT_CONNECTIONS)

    @property
    def MAILER_WRITE_BEHIND(self) -> bool:
        """Whether a run over one connection commits each outcome on a
        second database connection while the next message's envelope goes
        out (PostgreSQL only; ``mailer.sending.writebehind``). Still at most
        one message in doubt per connection after kill -9. False: one
        database connection per worker, every commit waited for."""
        return bool(self._get("MAILER_WRITE_BEHIND", True))

    @property
    def MAILER_LEASE_SECONDS(self) -> float:
        """How long a claim lasts before another worker may take the message
        over (a crashed worker's claims come back after this). A live worker
        renews its claims before they run short, so this only bounds how long
        a killed worker's mail waits. Default: 45 s, or 3 SMTP timeouts when
        that is longer (``EMAIL_TIMEOUT = 30`` gives 90 s); a value set here
        must be at least 3 SMTP timeouts (check ``mailer.E010``)."""
        seconds = self._get("MAILER_LEASE_SECONDS", None)
        if seconds is None:
            seconds = max(45.0, 3 * self.effective_smtp_timeout)
        return float(seconds)

    @property
    def effective_smtp_timeout(self) -> float:
        """Not a setting: the SMTP timeout in force, in seconds: the sending
        backend's (``EMAIL_TIMEOUT`` or the ``MAILERS`` alias's ``timeout``),
        else ``MAILER_SMTP_TIMEOUT``."""
        from mailer.compat import sending_backend_timeout

        return float(sending_backend_timeout() or self.MAILER_SMTP_TIMEOUT)

    @property
    def MAILER_SMTP_TIMEOUT(self) -> float:
        """Seconds to wait for an SMTP connection or any one reply when
        Django's ``EMAIL_TIMEOUT`` (or the ``MAILERS`` alias's ``timeout``) is
        unset; Django's own default is to wait for ever. One message's whole
        exchange is bounded by it too (plus its upload at 1 MiB/s)."""
        return float(self._get("MAILER_SMTP_TIMEOUT", 15))

    @property
    def MAILER_IN_DOUBT_RETRY_SECONDS(self) -> float:
        """How long a message *in doubt* (the relay went silent after the end
        of its DATA, so it may have been delivered) waits before it is tried
        again, with the same Message-ID."""
        return float(self._get("MAILER_IN_DOUBT_RETRY_SECONDS", 20 * 60))

    @property
    def MAILER_IN_DOUBT_MAX_RETRIES(self) -> int:
        """Retries of a message in doubt; after that it stays "in doubt, not
        retried" until an operator releases it (``retry_deferred
        --in-doubt``). Each retry may deliver one more copy."""
        return int(self._get("MAILER_IN_DOUBT_MAX_RETRIES", 1))

    @property
    def MAILER_MAX_ATTEMPTS(self) -> int | None:
        """Attempts before a temporarily failing (4xx) message fails for good
        (``None``: no count; ``MAILER_MAX_RETRY_SECONDS`` decides). Without
        ``MAILER_MAX_ATTEMPTS``, django-mailer's ``MAILER_EMAIL_MAX_RETRIES``
        (retries after the first attempt) sets it to that plus one."""
        value = self._get("MAILER_MAX_ATTEMPTS", None)
        if value is None and self.MAILER_EMAIL_MAX_RETRIES is not None:
            return self.MAILER_EMAIL_MAX_RETRIES + 1
        return None if value is None else int(value)

    @property
    def MAILER_MAX_RETRY_SECONDS(self) -> float:
        """How long a temporarily failing (4xx) message is retried after it was
        queued before it fails for good: days, like a real MTA's queue
        lifetime (Postfix: 5 days), since a relay's bad hour must not cost
        mail."""
        return float(self._get("MAILER_MAX_RETRY_SECONDS", 3 * 86400))

    @property
    def MAILER_RETRY_BACKOFF_SECONDS(self) -> float:
        """First retry delay after a 4xx; doubles with each attempt."""
        return float(self._get("MAILER_RETRY_BACKOFF_SECONDS", 60))

    @property
    def MAILER_RETRY_BACKOFF_MAX_SECONDS(self) -> float:
        """Longest delay (seconds) between two tries of a deferred message:
        the doubling backoff stops growing here."""
        return float(self._get("MAILER_RETRY_BACKOFF_MAX_SECONDS", 3600))

    @property
    def MAILER_LOOP_IDLE_SECONDS(self) -> float:
        """How long ``send_mail --loop`` sleeps when the queue is empty."""
        return float(self._get("MAILER_LOOP_IDLE_SECONDS", 5))

    @property
    def MAILER_SUPPRESS_ON_NO_SUCH_USER(self) -> bool:
        """Put an address on the don't-send list after a 5.1.1 "no such user"
        reply to job (newsletter) mail."""
        return bool(self._get("MAILER_SUPPRESS_ON_NO_SUCH_USER", True))

    @property
    def MAILER_SENT_BODY_RETENTION_SECONDS(self) -> float:
        """How long (seconds) the body of sent single mail stays in the queue
        table: it may hold live credentials (a password-reset link). 0 drops
        it at the end of the ``send_mail`` run that sent it. Job mail keeps
        no body at all (it is rebuilt from the job)."""
        value = float(self._get("MAILER_SENT_BODY_RETENTION_SECONDS", 3600))
        if value < 0:
            raise ValueError(
                f"MAILER_SENT_BODY_RETENTION_SECONDS must be 0 or more, not {value}"
            )
        return value

    # -- jobs ---------------------------------------------------------------------

    @property
    def MAILER_EXPAND_CHUNK_SIZE(self) -> int:
        """Recipients inserted (and committed with the job's cursor) at once."""
        return int(self._get("MAILER_EXPAND_CHUNK_SIZE", 2000))

    @property
    def MAILER_RESEND_GUARD(self) -> timedelta:
        """An object announced more recently than this is not queued again
        unless the editor confirms a resend."""
        value = self._get("MAILER_RESEND_GUARD", timedelta(hours=1))
        return value if isinstance(value, timedelta) else timedelta(seconds=value)

    @property
    def MAILER_SITE_URL(self) -> str | None:
        """Absolute base URL of the site (``https://news.example.com``) used for
        unsubscribe links in email."""
        value = self._get("MAILER_SITE_URL", None)
        return value.rstrip("/") if value else None

    @property
    def MAILER_UNSUBSCRIBE_MAILTO(self) -> str | None:
        """Address for the ``mailto:`` form of ``List-Unsubscribe`` (optional)."""
        return self._get("MAILER_UNSUBSCRIBE_MAILTO", None)

    @property
    def MAILER_LIST_ID_DOMAIN(self) -> str | None:
        """Domain used in ``List-Id`` and ``Message-ID`` headers of job mail;
        defaults to the host of ``MAILER_SITE_URL``."""
        return self._get("MAILER_LIST_ID_DOMAIN", None)

    # -- real relays ----------------------------------------------------------

    @property
    def MAILER_RATE_LIMITS(self) -> dict[str, int]:
        """Global caps shared by every worker on every host, in messages per
        window: ``{"second": 14, "day": 50000}`` (keys ``second``, ``minute``,
        ``hour``, ``day``). Empty: no cap."""
        return dict(self._get("MAILER_RATE_LIMITS", None) or {})

    @property
    def MAILER_DOMAIN_RATE(self) -> dict[str, int]:
        """Most messages per minute to one recipient domain:
        ``{"default": 600, "gmail.com": 300}``. Empty: no pacing."""
        return dict(self._get("MAILER_DOMAIN_RATE", None) or {})

    @property
    def MAILER_RATE_WAIT_SECONDS(self) -> float:
        """Longest a worker sleeps for a full global window to end; a longer
        wait (a full hour or day) ends the run and leaves the mail due at the
        window's end."""
        return float(self._get("MAILER_RATE_WAIT_SECONDS", 5))

    @property
    def MAILER_RELAY_BACKOFF_SECONDS(self) -> float:
        """First pause of every worker after the relay's own temporary trouble
        (4.3.x, 421, refused connection); doubles with each bout in a row."""
        return float(self._get("MAILER_RELAY_BACKOFF_SECONDS", 30))

    @property
    def MAILER_RELAY_BACKOFF_MAX_SECONDS(self) -> float:
        """Longest pause (seconds) of every worker for the relay's own
        trouble: the doubling pause stops growing here."""
        return float(self._get("MAILER_RELAY_BACKOFF_MAX_SECONDS", 1800))

    @property
    def MAILER_HELO_NAME(self) -> str | None:
        """Name in the EHLO/HELO greeting; defaults to the host of
        ``MAILER_SITE_URL``, then Django's ``DNS_NAME``."""
        return self._get("MAILER_HELO_NAME", None)

    @property
    def MAILER_SSL_CA_FILE(self) -> str | None:
        """PEM file of the CA(s) to trust for the relay's STARTTLS/SSL
        certificate (a private CA); verification stays on either way."""
        return self._get("MAILER_SSL_CA_FILE", None)

    # -- waking workers (mailer/worker/) ---------------------------------------

    @property
    def MAILER_POLL_SECONDS(self) -> float | None:
        """Where PostgreSQL's LISTEN/NOTIFY is not available (SQLite): how often
        an idle ``runmailer`` asks the database, with one indexed query,
        whether mail or a job is waiting. ``None``: only every
        ``MAILER_EMPTY_QUEUE_SLEEP``, as django-mailer did."""
        value = self._get("MAILER_POLL_SECONDS", 0.5)
        return None if value is None else float(value)

    @property
    def MAILER_USE_TASKS(self) -> bool:
        """Queuing mail or confirming a job enqueues a task in Django's tasks
        framework (on commit, at most one waiting task of each kind)."""
        return bool(self._get("MAILER_USE_TASKS", False))

    @property
    def MAILER_TASK_BACKEND(self) -> str:
        """The ``TASKS`` alias the mail tasks are enqueued on."""
        return self._get("MAILER_TASK_BACKEND", "default")

    @property
    def MAILER_TASK_LEASE_SECONDS(self) -> float:
        """How long an enqueued task counts as waiting: no second task of its
        kind is enqueued meanwhile. A task the backend lost is replaced after
        this (the mail itself waits in the queue, never in the task)."""
        return float(self._get("MAILER_TASK_LEASE_SECONDS", 60))

    @property
    def MAILER_STATUS_MAX_AGE(self) -> float | None:
        """``mailer_status --check``: seconds the oldest due message may wait
        before the check fails (``--max-age`` overrides it)."""
        value = self._get("MAILER_STATUS_MAX_AGE", None)
        return None if value is None else float(value)

    # -- django-mailer's settings, with django-mailer's meaning ---------------------

    @property
    def MAILER_PAUSE_SEND(self) -> bool:
        """While true, ``send_mail``, ``send_loop`` (and the worker commands)
        send nothing; mail keeps being queued."""
        return bool(self._get("MAILER_PAUSE_SEND", False))

    @property
    def MAILER_EMAIL_MAX_DEFERRED(self) -> int | None:
        """Stop a run once this many messages were deferred in it (``None``:
        no limit): a relay deferring everything is not hammered further."""
        return self._get("MAILER_EMAIL_MAX_DEFERRED", None)

    @property
    def MAILER_EMAIL_MAX_RETRIES(self) -> int | None:
        """Retries of a deferred message after its first attempt (``None``:
        ``MAILER_MAX_ATTEMPTS`` decides); ``retry_deferred`` leaves alone a
        message that has used them."""
        value = self._get("MAILER_EMAIL_MAX_RETRIES", None)
        return None if value is None else int(value)

    @property
    def MAILER_ERROR_HANDLER(self) -> str | None:
        """Dotted path of a django-mailer error handler, called as
        ``handler(connection, message, exc)`` for a delivery error; it
        returns ``(connection, status)``. See ``mailer.legacy.api``."""
        return self._get("MAILER_ERROR_HANDLER", None)

    @property
    def MAILER_EMPTY_QUEUE_SLEEP(self) -> float | None:
        """Seconds ``send_loop`` (``runmailer``) sleeps when nothing is due;
        ``None``: the long-lived worker waits for a notification only."""
        value = self._get("MAILER_EMPTY_QUEUE_SLEEP", 30)
        return None if value is None else float(value)

    @property
    def MAILER_MESSAGES_BATCH_SIZE(self) -> int | None:
        """Rows per INSERT when several emails are queued at once (the
        queueing backend's ``bulk_create`` batch size; ``None``: all at once)."""
        value = self._get("MAILER_MESSAGES_BATCH_SIZE", None)
        return None if value is None else int(value)

    # -- bounces and DKIM (mailer/bounces, mailer/sending/dkim.py) -------------

    @property
    def MAILER_BOUNCE_ADDRESS(self) -> str | None:
        """``local@domain`` whose VERP form (``local+TOKEN@domain``) becomes
        every email's envelope sender, so a late bounce names its message
        (``None``: envelope senders as before)."""
        return self._get("MAILER_BOUNCE_ADDRESS", None) or None

    @property
    def MAILER_SOFT_BOUNCE_LIMIT(self) -> int:
        """Soft bounces (4.x.x) of one address within ``SOFT_BOUNCE_DAYS``
        that put it on the don't-send list (reason bounced)."""
        return int(self._get("MAILER_SOFT_BOUNCE_LIMIT", 3))

    @property
    def MAILER_SOFT_BOUNCE_DAYS(self) -> float:
        """Days over which soft bounces are counted."""
        return float(self._get("MAILER_SOFT_BOUNCE_DAYS", 7))

    @property
    def MAILER_BOUNCE_IMAP(self) -> dict[str, Any]:
        """Where ``process_bounces --imap`` reads: a dict with ``host``,
        ``port`` (993), ``user``, ``password``, ``folder`` ("INBOX"),
        ``processed_folder`` (``None``: mark processed mail \\Seen and leave
        it), ``cafile`` (``None``: the system's CAs)."""
        return dict(self._get("MAILER_BOUNCE_IMAP", {}) or {})

    @property
    def MAILER_BOUNCE_MAILDIR(self) -> str | None:
        """Maildir ``process_bounces --maildir`` reads by default."""
        return self._get("MAILER_BOUNCE_MAILDIR", None) or None

    @property
    def MAILER_DKIM_KEY_FILE(self) -> str | None:
        """PEM private key (RSA 2048+ or Ed25519) every email is signed with
        at send time (``None``: no DKIM signing)."""
        return self._get("MAILER_DKIM_KEY_FILE", None) or None

    @property
    def MAILER_DKIM_SELECTOR(self) -> str:
        """DKIM selector (``s=``): the key's DNS name is
        ``<selector>._domainkey.<domain>``."""
        return self._get("MAILER_DKIM_SELECTOR", "mailer")

    @property
    def MAILER_DKIM_DOMAIN(self) -> str | None:
        """DKIM signing domain (``d=``); usually the From domain (DMARC
        alignment)."""
        return self._get("MAILER_DKIM_DOMAIN", None) or None


conf = MailerSettings()


def _setting_changed(*, setting: str, **kwargs: Any) -> None:
    conf.forget(setting)


setting_changed.connect(_setting_changed, dispatch_uid="mailer.conf")
