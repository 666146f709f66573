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
        from django.core.checks import Tags, register

        from mailer import checks, integrations

        # The system checks (ids in mailer/checks.py and the README's
        # settings table). check_site_url reads the database, so it is tagged
        # ``database``: Django runs it from ``migrate`` and ``check --database``
        # only.
        register(checks.check_setting_values, Tags.compatibility)
        register(checks.check_sending_backend, Tags.compatibility)
        register(checks.check_site_url, Tags.database)
        register(checks.check_unsubscribe_url, Tags.urls)
        register(checks.check_tasks, Tags.compatibility)
        register(checks.check_lease, Tags.compatibility)
        register(checks.check_django_mailer_settings, Tags.compatibility)
        register(checks.check_bounces_and_dkim, Tags.compatibility)

        integrations.connect_anymail()
