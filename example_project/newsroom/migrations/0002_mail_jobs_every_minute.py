"""With django-chroniker installed, schedule the three mail commands every
minute (Admin > Chroniker > Jobs; crontab then runs only ``manage.py cron``).
Without chroniker this migration does nothing: put the three commands in
crontab instead (see the README).

If chroniker is installed after this migration ran, add the jobs in its admin:
command ``send_mail``, args ``--max-seconds 55``, frequency minutely.
"""

from django.apps import apps as global_apps
from django.db import migrations
from django.utils import timezone

# Spelled "--option value", not "--option=value": chroniker turns any word
# with "=" into a call_command keyword ("--max-seconds" is then an unknown
# option, and "max_seconds=55" would arrive as the string "55", unparsed).
# Plain words go through the command's own argparse, as in a crontab line.
COMMANDS = [
    ("Expand mail jobs", "process_mail_jobs", "--max-seconds 50"),
    ("Send queued mail", "send_mail", "--max-seconds 55"),
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
    if global_apps.is_installed("chroniker"):
        dependencies.append(("chroniker", "__latest__"))

    operations = [migrations.RunPython(schedule, unschedule, elidable=True)]
