"""Settings for ``benchmarks/wakeup.py``: the benchmark settings plus Django's
tasks framework (django-tasks-db; the django-tasks backport on Django 5.2)."""

import django

from benchmarks.settings import *  # noqa: F403
from benchmarks.settings import INSTALLED_APPS

if django.VERSION < (6, 0):
    INSTALLED_APPS = [*INSTALLED_APPS, "django_tasks"]
INSTALLED_APPS = [*INSTALLED_APPS, "django_tasks_db"]
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
# Turned on by the benchmark while it measures the tasks worker.
MAILER_USE_TASKS = False
