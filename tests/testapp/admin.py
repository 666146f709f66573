from django.contrib import admin

from mailer.jobs.actions import EmailUpdate, EmailUpdateAdminMixin
from tests.testapp.models import Reader, Story


def readers(story):
    return Reader.objects.filter(active=True).values("email", "name")


@admin.register(Story)
class StoryAdmin(EmailUpdateAdminMixin, admin.ModelAdmin):
    email_update = EmailUpdate(
        subject=lambda story: f"Breaking: {story.headline}",
        text_template="testapp/story_email.txt",
        html_template="testapp/story_email.html",
        recipients=readers,
        from_email="The Daily <news@example.com>",
    )


@admin.register(Reader)
class ReaderAdmin(admin.ModelAdmin):
    list_display = ["email", "name", "active"]
