from django.apps import AppConfig


class NewsroomConfig(AppConfig):
    name = "newsroom"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from mailer.signals import unsubscribed

        unsubscribed.connect(stop_email_edition, dispatch_uid="newsroom.unsubscribe")


def stop_email_edition(sender, address: str, **kwargs) -> None:
    """A reader clicked one-click unsubscribe: keep our own lists in step."""
    from newsroom.models import Profile, Subscriber

    Subscriber.objects.filter(email__iexact=address).update(active=False)
    Profile.objects.filter(user__email__iexact=address).update(subscribed=False)
