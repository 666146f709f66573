"""The newsroom's two lists (mailer.subscriptions): readers join either or
both from the front page, and leave one while staying on the other."""

from django.db import migrations

LISTS = [
    ("Daily headlines", "daily-headlines", "The morning paper, every day."),
    ("Breaking news", "breaking-news", "Alerts when big news breaks."),
]


def create_lists(apps, schema_editor):
    MailingList = apps.get_model("mailer_subscriptions", "MailingList")
    ConsentWording = apps.get_model("mailer_subscriptions", "ConsentWording")
    for name, slug, description in LISTS:
        MailingList.objects.get_or_create(
            slug=slug,
            defaults={
                "name": name,
                "description": description,
                "list_id": slug,
                "from_email": "The Daily Bugle <news@bugle.example>",
            },
        )
    ConsentWording.objects.get_or_create(
        version="2026-1",
        defaults={
            "text": "Send me the newsletters I ticked. I can leave any of them "
            "at any time from a link in every email."
        },
    )


class Migration(migrations.Migration):
    dependencies = [
        ("newsroom", "0002_mail_jobs_every_minute"),
        ("mailer_subscriptions", "0001_initial"),
    ]

    operations = [migrations.RunPython(create_lists, migrations.RunPython.noop)]
