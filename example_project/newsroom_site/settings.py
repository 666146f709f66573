"""Settings for the example newsroom: a student daily mailing its readers.

Environment variables (all optional):

- ``DATABASE_URL``: ``sqlite:////abs/path.sqlite3`` or ``postgres://user@host/db``
  (read by dj-database-url, which is then needed); default
  ``example_project/db.sqlite3``.
- ``SMTP_HOST`` / ``SMTP_PORT``: where ``send_mail`` delivers; default
  127.0.0.1:1025, where ``manage.py smtp_sink`` listens.
- ``MAILER_SITE_URL``: the public address used in email links and one-click
  unsubscribe links; default http://127.0.0.1:8000 (``runserver``).
- ``MAILER_USE_TASKS``: ``0`` stops enqueuing mail tasks for ``db_worker``
  (default ``1`` when django-tasks-db is installed).
- ``SECRET_KEY``, ``DEBUG`` (``1`` by default: this is a local example).
"""

import os
from importlib.util import find_spec
from pathlib import Path

from mailer.testing.mailconfig import queue_then_smtp

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("SECRET_KEY", "example-only-not-secret")
DEBUG = os.environ.get("DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "mailer",
    # Lists, double opt-in signup, preference centre (optional sub-app).
    "mailer.subscriptions",
    "newsroom",
]
# django-chroniker (pip install "django-mailer-jobs[chroniker]") runs the two
# mail commands every minute, scheduled from the admin (migration 0002 of
# newsroom creates the jobs); crontab then runs only "manage.py cron". Without
# it, put the two commands in crontab. chroniker's models need the sites app.
if find_spec("chroniker"):
    INSTALLED_APPS[-2:-2] = [
        "django.contrib.sites",
        "newsroom_site.apps.ChronikerConfig",
    ]
    SITE_ID = 1

# Django's tasks framework (pip install "django-mailer-jobs[tasks]"), the
# alternative to chroniker: queuing mail or confirming a job enqueues a task
# on commit, and "manage.py db_worker" (django-tasks-db: this database, no
# broker) runs it within a fraction of a second. MAILER_USE_TASKS=0 in the
# environment turns it off (e.g. when chroniker or cron does the work).
# Django 5.2 takes the framework from the django-tasks backport; 6.0+ has it.
if find_spec("django_tasks_db"):
    import django

    if django.VERSION < (6, 0):
        INSTALLED_APPS.append("django_tasks")
    INSTALLED_APPS.append("django_tasks_db")
    TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    MAILER_USE_TASKS = os.environ.get("MAILER_USE_TASKS", "1") == "1"

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "newsroom_site.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
WSGI_APPLICATION = "newsroom_site.wsgi.application"
# WAL: the web process reads while a worker writes; a generous timeout lets
# workers queue for SQLite's one write lock.
SQLITE_OPTIONS = {
    "timeout": 30,
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    "transaction_mode": "IMMEDIATE",
}
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": BASE_DIR / "db.sqlite3",
    }
}
if os.environ.get("DATABASE_URL"):
    import dj_database_url  # pip install dj-database-url

    DATABASES["default"] = dj_database_url.config()
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = SQLITE_OPTIONS
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "Europe/London"
STATIC_URL = "static/"

# -- mail ---------------------------------------------------------------------
SMTP_HOST = os.environ.get("SMTP_HOST", "127.0.0.1")
SMTP_PORT = int(os.environ.get("SMTP_PORT", "1025"))
# Queue with DbBackend, send over SMTP: Django 6.1's MAILERS or, before it,
# EMAIL_BACKEND and EMAIL_* (see mailer/testing/mailconfig.py for both forms).
globals().update(queue_then_smtp(SMTP_HOST, SMTP_PORT, timeout=30))

DEFAULT_FROM_EMAIL = "The Daily Bugle <news@bugle.example>"
SERVER_EMAIL = DEFAULT_FROM_EMAIL
MAILER_SITE_URL = os.environ.get("MAILER_SITE_URL", "http://127.0.0.1:8000")
MAILER_LIST_ID_DOMAIN = "bugle.example"
