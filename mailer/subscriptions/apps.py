from django.apps import AppConfig

__all__ = ["SubscriptionsConfig"]


class SubscriptionsConfig(AppConfig):
    """The optional ``mailer.subscriptions`` app (label
    ``mailer_subscriptions``): ``ready()`` registers its URL check and
    offers lists on the "Send email update" page."""

    name = "mailer.subscriptions"
    label = "mailer_subscriptions"
    verbose_name = "Mailer subscriptions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core import checks

        from .checks import check_setting_values, check_urls

        checks.register(check_urls, checks.Tags.urls)
        checks.register(check_setting_values, checks.Tags.compatibility)
        # The editor can pick lists on the "Send email update" page.
        from mailer.jobs.actions import register_audience

        from .audience import ListAudience

        register_audience(ListAudience())

        # A reader who leaves through the core's global link (non-list job
        # mail) leaves every list too, so the counts say what is sent.
        from mailer.signals import unsubscribed

        from .services import left_everything

        unsubscribed.connect(left_everything, dispatch_uid="mailer_subscriptions")
