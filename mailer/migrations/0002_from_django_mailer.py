"""Carry a django-mailer database over: its queue, don't-send list and log.

Runs after ``0001_queue`` has set django-mailer's tables aside (see that
migration's docstring for the whole path) and does nothing on a database that
never had django-mailer. The copy itself, what it trusts when decoding
django-mailer's pickled emails, and how each field maps to ours are described
in :mod:`mailer.legacy.django_mailer`.

Reversing it does not restore django-mailer's tables (the README's "The way
back" says how to return to django-mailer).
"""

from django.db import migrations

from mailer.legacy.django_mailer import import_django_mailer


class Migration(migrations.Migration):
    dependencies = [
        ("mailer", "0001_queue"),
    ]

    operations = [
        migrations.RunPython(import_django_mailer, migrations.RunPython.noop),
    ]
