from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _

__all__ = ["MailerConfig"]


class MailerConfig(AppConfig):
    """The ``mailer`` app (label ``mailer``). :meth:`ready` registers the
    system checks and, when django-anymail is installed, its tracking
    receiver (Django's ``AppConfig.ready()``,
    https://docs.djangoproject.com/en/stable/ref/applications/)."""

    name = "mailer"
    label = "mailer"
    verbose_name = _("Mail queue")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from mailer import (
            checks,  # noqa: F401 - registers the system checks
            integrations,
        )

        integrations.connect_anymail()
