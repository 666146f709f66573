"""Every ``MAILER_*`` setting, its type and its default, in one place.

Each property reads ``django.conf.settings`` at access time, so
``override_settings`` works in tests and nothing is frozen at import. The
README documents the same list; keep the two in step.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings as django_settings

DEFAULT_SENDING_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
QUEUE_BACKEND = "mailer.backend.DbBackend"


class MailerSettings:
    def _get(self, name: str, default: Any) -> Any:
        return getattr(django_settings, name, default)

    # -- what actually sends -------------------------------------------------

    @property
    def EMAIL_BACKEND(self) -> str:
        """Dotted path of the Django email backend that really sends (5.2/6.0
        style, or 6.1 without ``MAILERS``). Any ESP backend works."""
        return self._get("MAILER_EMAIL_BACKEND", DEFAULT_SENDING_BACKEND)

    @property
    def SEND_USING(self) -> str:
        """With Django 6.1's ``MAILERS``: the alias of the mailer that really
        sends (the queue itself is usually ``"default"``)."""
        return self._get("MAILER_SEND_USING", "smtp")

    # -- queueing -------------------------------------------------------------

    @property
    def BACKEND_PRIORITY(self) -> str:
        """Priority of mail queued through ``mailer.backend.DbBackend``: high, so
        Django's password-reset and registration emails overtake newsletters."""
        return self._get("MAILER_BACKEND_PRIORITY", "high")

    @property
    def DEFAULT_PRIORITY(self) -> str:
        """Priority of ``mailer.send_mail()`` and friends when none is given
        (django-mailer's default)."""
        return self._get("MAILER_DEFAULT_PRIORITY", "medium")

    @property
    def MAX_MESSAGE_BYTES(self) -> int:
        """Largest message (RFC 5322 bytes) accepted into the queue."""
        return int(self._get("MAILER_MAX_MESSAGE_BYTES", 10 * 1024 * 1024))

    # -- the send loop ----------------------------------------------------------

    @property
    def EMAIL_MAX_BATCH(self) -> int | None:
        """Most messages one ``send_mail`` run sends (``None``: no limit)."""
        return self._get("MAILER_EMAIL_MAX_BATCH", None)

    @property
    def EMAIL_MAX_SECONDS(self) -> float | None:
        """Longest one ``send_mail`` run keeps claiming new batches."""
        return self._get("MAILER_EMAIL_MAX_SECONDS", None)

    @property
    def EMAIL_THROTTLE(self) -> float | None:
        """Most messages per second one worker sends (``None``: as fast as the
        server takes them)."""
        return self._get("MAILER_EMAIL_THROTTLE", None)

    @property
    def BATCH_SIZE(self) -> int:
        """Messages claimed at once. Small, so that high-priority mail queued
        meanwhile is claimed by the very next batch."""
        return int(self._get("MAILER_BATCH_SIZE", 100))

    @property
    def LEASE(self) -> timedelta:
        """How long a claim lasts before another worker may take the message
        over (a crashed worker's claims come back after this)."""
        return timedelta(seconds=self._get("MAILER_LEASE_SECONDS", 300))

    @property
    def MAX_ATTEMPTS(self) -> int | None:
        """Attempts before a temporarily failing (4xx) message fails for good
        (``None``: no count; ``MAILER_MAX_RETRY_SECONDS`` decides)."""
        value = self._get("MAILER_MAX_ATTEMPTS", None)
        return None if value is None else int(value)

    @property
    def MAX_RETRY_SECONDS(self) -> timedelta:
        """How long a temporarily failing (4xx) message is retried after it was
        queued before it fails for good: days, like a real MTA's queue
        lifetime (Postfix: 5 days), since a relay's bad hour must not cost
        mail."""
        return timedelta(seconds=self._get("MAILER_MAX_RETRY_SECONDS", 3 * 86400))

    @property
    def RETRY_BACKOFF(self) -> timedelta:
        """First retry delay after a 4xx; doubles with each attempt."""
        return timedelta(seconds=self._get("MAILER_RETRY_BACKOFF_SECONDS", 60))

    @property
    def RETRY_BACKOFF_MAX(self) -> timedelta:
        return timedelta(seconds=self._get("MAILER_RETRY_BACKOFF_MAX_SECONDS", 3600))

    @property
    def LOOP_IDLE_SECONDS(self) -> float:
        """How long ``send_mail --loop`` sleeps when the queue is empty."""
        return float(self._get("MAILER_LOOP_IDLE_SECONDS", 5))

    @property
    def SUPPRESS_ON_NO_SUCH_USER(self) -> bool:
        """Put an address on the don't-send list after a 5.1.1 "no such user"
        reply to job (newsletter) mail."""
        return bool(self._get("MAILER_SUPPRESS_ON_NO_SUCH_USER", True))

    # -- jobs ---------------------------------------------------------------------

    @property
    def EXPAND_CHUNK_SIZE(self) -> int:
        """Recipients inserted (and committed with the job's cursor) at once."""
        return int(self._get("MAILER_EXPAND_CHUNK_SIZE", 2000))

    @property
    def RESEND_GUARD(self) -> timedelta:
        """An object announced more recently than this is not queued again
        unless the editor confirms a resend."""
        value = self._get("MAILER_RESEND_GUARD", timedelta(hours=1))
        return value if isinstance(value, timedelta) else timedelta(seconds=value)

    @property
    def SITE_URL(self) -> str | None:
        """Absolute base URL of the site (``https://news.example.com``) used for
        unsubscribe links in email."""
        value = self._get("MAILER_SITE_URL", None)
        return value.rstrip("/") if value else None

    @property
    def UNSUBSCRIBE_MAILTO(self) -> str | None:
        """Address for the ``mailto:`` form of ``List-Unsubscribe`` (optional)."""
        return self._get("MAILER_UNSUBSCRIBE_MAILTO", None)

    @property
    def LIST_ID_DOMAIN(self) -> str | None:
        """Domain used in ``List-Id`` and ``Message-ID`` headers of job mail;
        defaults to the host of ``MAILER_SITE_URL``."""
        return self._get("MAILER_LIST_ID_DOMAIN", None)

    # -- real relays ----------------------------------------------------------

    @property
    def RATE_LIMITS(self) -> dict[str, int]:
        """Global caps shared by every worker on every host, in messages per
        window: ``{"second": 14, "day": 50000}`` (keys ``second``, ``minute``,
        ``hour``, ``day``). Empty: no cap."""
        return dict(self._get("MAILER_RATE_LIMITS", None) or {})

    @property
    def DOMAIN_RATE(self) -> dict[str, int]:
        """Most messages per minute to one recipient domain:
        ``{"default": 600, "gmail.com": 300}``. Empty: no pacing."""
        return dict(self._get("MAILER_DOMAIN_RATE", None) or {})

    @property
    def RATE_WAIT_SECONDS(self) -> float:
        """Longest a worker sleeps for a full global window to end; a longer
        wait (a full hour or day) ends the run and leaves the mail due at the
        window's end."""
        return float(self._get("MAILER_RATE_WAIT_SECONDS", 5))

    @property
    def RELAY_BACKOFF(self) -> timedelta:
        """First pause of every worker after the relay's own temporary trouble
        (4.3.x, 421, refused connection); doubles with each bout in a row."""
        return timedelta(seconds=self._get("MAILER_RELAY_BACKOFF_SECONDS", 30))

    @property
    def RELAY_BACKOFF_MAX(self) -> timedelta:
        return timedelta(seconds=self._get("MAILER_RELAY_BACKOFF_MAX_SECONDS", 1800))

    @property
    def HELO_NAME(self) -> str | None:
        """Name in the EHLO/HELO greeting; defaults to the host of
        ``MAILER_SITE_URL``, then Django's ``DNS_NAME``."""
        return self._get("MAILER_HELO_NAME", None)

    @property
    def SSL_CA_FILE(self) -> str | None:
        """PEM file of the CA(s) to trust for the relay's STARTTLS/SSL
        certificate (a private CA); verification stays on either way."""
        return self._get("MAILER_SSL_CA_FILE", None)


settings = MailerSettings()
