"""Settings for the benchmarks: tests.settings' choices, without chroniker,
plus the benchmark's own newsletter app. The database comes from
``DATABASE_URL`` (SQLite file or the throwaway PostgreSQL of ``run.py``),
the SMTP sink's port from ``MAILER_BENCH_SMTP_PORT``."""

import os

from mailer.testing.mailconfig import queue_then_smtp
from tests.databases import database

SECRET_KEY = "benchmarks-only-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "mailer",
    "benchmarks.benchapp",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "benchmarks.urls"
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
DATABASES = {"default": database("bench")}

SMTP_PORT = int(os.environ.get("MAILER_BENCH_SMTP_PORT", "1"))
globals().update(queue_then_smtp("127.0.0.1", SMTP_PORT, timeout=10))

# Every job message carries its own List-Unsubscribe link.
MAILER_SITE_URL = "https://news.example.com"
DEFAULT_FROM_EMAIL = "The Daily <news@example.com>"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Durable by default, as a site would run: SQLite in WAL mode as the README
# recommends, with SQLite's default synchronous=FULL (tests/databases.py's
# synchronous=NORMAL, which the tests use, may lose the last commits on power
# loss). MAILER_BENCH_TUNED=1 (run.py --tuned) keeps NORMAL, reported apart.
if DATABASES["default"]["ENGINE"].endswith("sqlite3") and not os.environ.get(
    "MAILER_BENCH_TUNED"
):
    DATABASES["default"]["OPTIONS"]["init_command"] = "PRAGMA journal_mode=WAL;"

# The suite compares one worker with the one-connection loop, so its workers
# use one connection (where send_mail can drive several); the relay figure
# passes --connections explicitly.
MAILER_CONNECTIONS = 1

# MAILER_BENCH_PREPARE=1: PostgreSQL with prepared statements (Django's
# OPTIONS "prepare_threshold"; off by default for PgBouncer's sake), a
# site's choice reported beside the default, never instead of it.
if os.environ.get("MAILER_BENCH_PREPARE") and DATABASES["default"]["ENGINE"].endswith(
    "postgresql"
):
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = 5

# MAILER_BENCH_WRITE_BEHIND=0: every outcome committed before the next
# message (the engine's behaviour before MAILER_WRITE_BEHIND), for an A/B.
MAILER_WRITE_BEHIND = os.environ.get("MAILER_BENCH_WRITE_BEHIND", "1") != "0"
