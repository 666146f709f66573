"""With django-chroniker installed, schedule the three mail commands every
minute (Admin > Chroniker > Jobs). Without it, this migration does nothing:
use crontab instead (see the README)."""

from django.conf import settings
from django.db import migrations
from django.utils import timezone

COMMANDS = [
    ("Expand mail jobs", "process_mail_jobs", "--max-seconds=50"),
    ("Send queued mail", "send_mail", "--max-seconds=55"),
    ("Retry deferred mail", "retry_deferred", ""),
]


def schedule(apps, schema_editor):
    try:
        job_model = apps.get_model("chroniker", "Job")
    except LookupError:
        return
    for name, command, args in COMMANDS:
        job_model.objects.get_or_create(
            command=command,
            defaults={
                "name": name,
                "args": args,
                "frequency": "MINUTELY",
                "params": "interval:1",
                "enabled": True,
                "next_run": timezone.now(),
            },
        )


def unschedule(apps, schema_editor):
    try:
        job_model = apps.get_model("chroniker", "Job")
    except LookupError:
        return
    job_model.objects.filter(command__in=[c for _n, c, _a in COMMANDS]).delete()


class Migration(migrations.Migration):
    dependencies = [("newsroom", "0001_initial")]
    if "chroniker" in settings.INSTALLED_APPS:
        dependencies.append(("chroniker", "__latest__"))

    operations = [migrations.RunPython(schedule, unschedule)]
