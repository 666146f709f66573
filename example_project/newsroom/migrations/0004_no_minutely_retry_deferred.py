"""Take ``retry_deferred`` off chroniker's every-minute jobs (0002 put it
there). Deferred mail becomes due again by itself after its backoff; a
``retry_deferred`` every minute made every deferred message due at once,
so a relay in trouble was tried again every minute instead of after 1, 2,
4 ... minutes. Run it by hand once the trouble is fixed.
"""

from django.apps import apps as global_apps
from django.db import migrations


def remove_job(apps, schema_editor):
    try:
        job_model = apps.get_model("chroniker", "Job")
    except LookupError:
        return
    job_model.objects.filter(command="retry_deferred", frequency="MINUTELY").delete()


class Migration(migrations.Migration):
    dependencies = [("newsroom", "0003_mailing_lists")]
    if global_apps.is_installed("chroniker"):
        dependencies.append(("chroniker", "__latest__"))

    operations = [
        migrations.RunPython(remove_job, migrations.RunPython.noop, elidable=True)
    ]
