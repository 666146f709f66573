"""Settings for the test suite: SQLite by default, PostgreSQL with DATABASE_URL."""

import json
import os

from mailer.testing.mailconfig import queue_then_smtp
from tests.databases import database

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
# MAILER_TEST_USE_TZ=0 runs the suite with naive datetimes (tests/test_naive_time.py
# runs the queue, expansion, sending, retries and purges so in every env).
USE_TZ = os.environ.get("MAILER_TEST_USE_TZ", "1") != "0"
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.sites",
    # The admin's and mailer's CSS and JS, served by the browser tests'
    # live server (tests/system/test_desk_browser.py).
    "django.contrib.staticfiles",
    "chroniker",
    "mailer",
    "mailer.subscriptions",
    "tests.testapp",
]
SITE_ID = 1
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "tests.urls"
STATIC_URL = "/static/"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
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
DATABASES = {"default": database("tests")}
# Worker processes started by a test connect to that test's database.
if os.environ.get("MAILER_TEST_DB_NAME"):
    DATABASES["default"]["NAME"] = os.environ["MAILER_TEST_DB_NAME"]

# Where the sending backend connects: the tests' SMTP server, whose port the
# fixtures set (override_settings in-process, this variable for subprocesses).
SMTP_PORT = int(os.environ.get("MAILER_TEST_SMTP_PORT", "1"))

# The queue is the default way to send; the SMTP test server's port is set by
# the fixtures (tests/conftest.py) through override_settings.
globals().update(queue_then_smtp("127.0.0.1", SMTP_PORT, timeout=10))

# One connection per run unless a test asks for more (tests/sending/test_pool.py):
# the rest of the suite checks the exact order and counts of one connection.
MAILER_CONNECTIONS = 1
MAILER_LEASE_SECONDS = int(os.environ.get("MAILER_TEST_LEASE_SECONDS", "300"))
MAILER_SITE_URL = "https://news.example.com"
# Rate limits of worker processes started by a test (tests/sending/test_quotas.py).
if os.environ.get("MAILER_TEST_RATE_LIMITS"):
    MAILER_RATE_LIMITS = json.loads(os.environ["MAILER_TEST_RATE_LIMITS"])
# No shared relay pause unless a test asks for one (tests/sending/test_relaypause.py):
# many tests bring a relay down and up again and send at once.
MAILER_RELAY_BACKOFF_SECONDS = float(os.environ.get("MAILER_TEST_RELAY_BACKOFF", "0"))
if os.environ.get("MAILER_TEST_MAX_ATTEMPTS"):
    MAILER_MAX_ATTEMPTS = int(os.environ["MAILER_TEST_MAX_ATTEMPTS"])
DEFAULT_FROM_EMAIL = "The Daily <news@example.com>"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Django's tasks framework (mailer/worker/tasks.py): django-tasks-db stores
# the tasks in this database and ``manage.py db_worker`` runs them. On Django
# 5.2 the framework itself is the django-tasks backport. Tests opt in with
# MAILER_USE_TASKS (worker subprocesses: the environment variable).
from importlib.util import find_spec  # noqa: E402

if find_spec("django_tasks_db"):
    import django  # noqa: E402

    if django.VERSION < (6, 0):
        INSTALLED_APPS.append("django_tasks")
    INSTALLED_APPS.append("django_tasks_db")
    TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
MAILER_USE_TASKS = os.environ.get("MAILER_TEST_USE_TASKS") == "1"
# Worker processes of the timeout and clock tests: an unset EMAIL_TIMEOUT
# ("none", Django's default), a small MAILER_SMTP_TIMEOUT, a skewed clock.
if os.environ.get("MAILER_TEST_EMAIL_TIMEOUT"):
    _timeout = os.environ["MAILER_TEST_EMAIL_TIMEOUT"]
    globals().update(
        queue_then_smtp(
            "127.0.0.1",
            SMTP_PORT,
            timeout=None if _timeout == "none" else float(_timeout),
        )
    )
elif MAILER_LEASE_SECONDS < 30:
    # Short test leases (2 s in test_crashes) need a short SMTP timeout: a
    # lease must outlast 3 of them (check mailer.E010).
    globals().update(
        queue_then_smtp("127.0.0.1", SMTP_PORT, timeout=MAILER_LEASE_SECONDS / 3)
    )
if os.environ.get("MAILER_TEST_SMTP_TIMEOUT"):
    MAILER_SMTP_TIMEOUT = float(os.environ["MAILER_TEST_SMTP_TIMEOUT"])
if os.environ.get("MAILER_TEST_CLOCK_OFFSET"):
    from tests.clock import shift

    shift(float(os.environ["MAILER_TEST_CLOCK_OFFSET"]))
