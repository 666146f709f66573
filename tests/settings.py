"""Settings for the test suite: SQLite by default, PostgreSQL with DATABASE_URL."""

import os

from mailer.testing.dburl import database_from_url
from mailer.testing.mailconfig import queue_then_smtp

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.sites",
    "chroniker",
    "mailer",
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
DATABASES = {"default": database_from_url(os.environ.get("DATABASE_URL"), "tests")}
# Worker processes started by a test connect to that test's database.
if os.environ.get("MAILER_TEST_DB_NAME"):
    DATABASES["default"]["NAME"] = os.environ["MAILER_TEST_DB_NAME"]

# Where the sending backend connects: the tests' SMTP server, whose port the
# fixtures set (override_settings in-process, this variable for subprocesses).
SMTP_PORT = int(os.environ.get("MAILER_TEST_SMTP_PORT", "1"))

# The queue is the default way to send; the SMTP test server's port is set by
# the fixtures (tests/conftest.py) through override_settings.
globals().update(queue_then_smtp("127.0.0.1", SMTP_PORT, timeout=10))

MAILER_LEASE_SECONDS = int(os.environ.get("MAILER_TEST_LEASE_SECONDS", "300"))
MAILER_SITE_URL = "https://news.example.com"
DEFAULT_FROM_EMAIL = "The Daily <news@example.com>"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

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
    from mailer.testing.clock import shift

    shift(float(os.environ["MAILER_TEST_CLOCK_OFFSET"]))
