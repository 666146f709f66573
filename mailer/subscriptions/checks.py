"""System checks of the subscriptions app, with stable ids
(``mailer_subscriptions.E001``: the URLs; ``E002`` to ``E004``: one per
setting, with the core's validators, :mod:`mailer.checks`)."""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings
from django.core.checks import Error

from mailer.checks import SettingCheck, check_values, whole

from .conf import settings

__all__ = ["check_urls", "check_setting_values"]


def check_urls(app_configs: Any = None, **kwargs: Any) -> list:
    """Every list email links to this app's pages, so its URLs must be
    reachable under the ``mailer_subscriptions`` namespace."""
    from mailer.unsubscribe.tokens import reverse_here

    if not getattr(django_settings, "ROOT_URLCONF", None):
        return []
    path, _problem = reverse_here(
        "mailer_subscriptions:subscribe",
        what="the signup page's URL",
        urls="mailer.subscriptions.urls",
    )
    if path is None:
        return [
            Error(
                "mailer.subscriptions is installed but its URLs are not: "
                "list emails could not carry their unsubscribe and preference "
                "links.",
                hint='Add path("newsletters/", include("mailer.subscriptions.urls")) '
                "to ROOT_URLCONF.",
                id="mailer_subscriptions.E001",
            )
        ]
    return []


def _rate_limit(value: Any) -> None:
    """``(posts, seconds)``: two whole numbers >= 1."""
    expected = "a pair (posts, seconds) of whole numbers >= 1"
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"{value!r} is not {expected}")
    for part in value:
        try:
            whole(1)(part)
        except ValueError:
            raise ValueError(f"{value!r} is not {expected}") from None


#: One row per setting of :mod:`mailer.subscriptions.conf`.
SETTINGS: tuple[SettingCheck, ...] = (
    SettingCheck(
        "MAILER_SUBSCRIPTIONS_CONFIRM_DAYS",
        "mailer_subscriptions.E002",
        whole(1),
        read=lambda: settings.CONFIRM_MAX_AGE,
    ),
    SettingCheck(
        "MAILER_SUBSCRIPTIONS_RESEND_MINUTES",
        "mailer_subscriptions.E003",
        whole(0),
        read=lambda: settings.RESEND_WINDOW,
    ),
    SettingCheck(
        "MAILER_SUBSCRIPTIONS_RATE_LIMIT",
        "mailer_subscriptions.E004",
        _rate_limit,
        hint="E.g. MAILER_SUBSCRIPTIONS_RATE_LIMIT = (10, 3600): ten signups "
        "per client address per hour.",
        read=lambda: settings.RATE_LIMIT,
    ),
)


def check_setting_values(app_configs: Any = None, **kwargs: Any) -> list:
    """Every ``MAILER_SUBSCRIPTIONS_*`` setting's type and range."""
    return check_values(SETTINGS)
