"""System checks of the subscriptions app (ids ``mailer_subscriptions.E001``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings
from django.core.checks import Error


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
