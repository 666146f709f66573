"""Settings of the subscriptions app, read at each access (``override_settings``
works), one typed property per setting; see the README's settings table."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings as django_settings

__all__ = ["Settings", "settings"]


class Settings:
    """The sub-app's ``MAILER_SUBSCRIPTIONS_*`` settings as typed values
    (``timedelta``, ``(count, seconds)``); use the instance ``settings``."""

    @property
    def CONFIRM_MAX_AGE(self) -> timedelta:
        """``MAILER_SUBSCRIPTIONS_CONFIRM_DAYS`` (int, default 7): how long a
        confirmation link works."""
        days = getattr(django_settings, "MAILER_SUBSCRIPTIONS_CONFIRM_DAYS", 7)
        return timedelta(days=days)

    @property
    def RESEND_WINDOW(self) -> timedelta:
        """``MAILER_SUBSCRIPTIONS_RESEND_MINUTES`` (int, default 60): within
        this, a second signup for the same address and list sends no second
        confirmation email."""
        minutes = getattr(django_settings, "MAILER_SUBSCRIPTIONS_RESEND_MINUTES", 60)
        return timedelta(minutes=minutes)

    @property
    def RATE_LIMIT(self) -> tuple[int, int]:
        """``MAILER_SUBSCRIPTIONS_RATE_LIMIT`` ((int, int), default (10, 3600)):
        at most this many signup posts per client IP address per this many
        seconds, counted in Django's ``default`` cache."""
        return tuple(
            getattr(django_settings, "MAILER_SUBSCRIPTIONS_RATE_LIMIT", (10, 3600))
        )


settings = Settings()
