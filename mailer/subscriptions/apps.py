from django.apps import AppConfig


class SubscriptionsConfig(AppConfig):
    name = "mailer.subscriptions"
    label = "mailer_subscriptions"
    verbose_name = "Mailer subscriptions"
    default_auto_field = "django.db.models.BigAutoField"
