"""System checks catch configurations that would loop or lose mail, and every
setting's bad value, by a stable id (mailer/checks.py)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import django
import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from mailer.backend import DbBackend
from mailer.checks import SETTINGS, SettingCheck, check_values
from mailer.conf import MailerSettings
from mailer.jobs.services import RenderedEmail, create_job
from tests.conftest import point_mail_at

MAILERS = django.VERSION >= (6, 1)
SMTP = "django.core.mail.backends.smtp.EmailBackend"


class LowPriorityQueue(DbBackend):
    """A project's own queue backend, e.g. for bulk mail."""


def mailer_messages(**kwargs) -> list:
    """This app's and its sub-app's check messages."""
    return [m for m in run_checks(**kwargs) if m.id.startswith("mailer")]


def mailer_ids(**kwargs) -> list[str]:
    return [m.id for m in mailer_messages(**kwargs)]


def send_using(settings, backend: str) -> None:
    """Make ``backend`` the one that really sends, in this Django's style."""
    if MAILERS:
        settings.MAILERS = {**settings.MAILERS, "smtp": {"BACKEND": backend}}
    else:
        settings.MAILER_EMAIL_BACKEND = backend


def test_the_suites_configuration_passes(settings):
    # The test runner swaps every email backend for locmem; check the real one.
    point_mail_at(settings, 25)
    assert mailer_ids() == []


@pytest.mark.parametrize(
    "backend", ["mailer.backend.DbBackend", "tests.test_checks.LowPriorityQueue"]
)
def test_e001_the_queue_as_its_own_sending_backend(settings, backend):
    send_using(settings, backend)

    (error,) = [m for m in run_checks() if m.id.startswith("mailer.")]

    assert error.id == "mailer.E001"
    assert error.msg == (
        "The mail queue is configured as its own sending backend: send_mail "
        "would queue every email again instead of sending it."
    )
    assert ("MAILER_SEND_USING" if MAILERS else "MAILER_EMAIL_BACKEND") in error.hint


def test_e001_stops_manage_py_check(settings):
    send_using(settings, "mailer.backend.DbBackend")
    with pytest.raises(SystemCheckError, match=r"\(mailer\.E001\) The mail queue"):
        call_command("check")


def test_a_real_sending_backend_passes(settings):
    send_using(settings, SMTP)
    assert mailer_ids() == []
    send_using(settings, "anymail.backends.test.EmailBackend")
    assert mailer_ids() == []


@pytest.mark.skipif(not MAILERS, reason="MAILERS is Django 6.1's setting")
def test_e001_when_mailer_send_using_names_the_queue_alias(settings):
    point_mail_at(settings, 25)
    settings.MAILER_SEND_USING = "default"
    assert mailer_ids() == ["mailer.E001"]


@pytest.mark.skipif(not MAILERS, reason="MAILERS is Django 6.1's setting")
def test_e002_when_mailer_send_using_is_not_a_mailers_alias(settings):
    settings.MAILER_SEND_USING = "relay"
    (error,) = [m for m in run_checks() if m.id.startswith("mailer.")]
    assert error.id == "mailer.E002"
    assert (
        error.msg == "MAILER_SEND_USING is 'relay', which is not an alias in MAILERS."
    )


@pytest.mark.skipif(MAILERS, reason="without MAILERS only")
def test_the_queue_as_email_backend_is_the_intended_setup(settings):
    settings.EMAIL_BACKEND = "mailer.backend.DbBackend"
    settings.MAILER_EMAIL_BACKEND = SMTP
    assert mailer_ids() == []


@pytest.mark.django_db
def test_w001_job_mail_without_a_site_url_has_no_unsubscribe_link(settings):
    settings.MAILER_SITE_URL = None
    assert mailer_ids(tags=["database"], databases=["default"]) == []
    create_job(
        content=RenderedEmail(subject="Issue 7", body_text="News"),
        recipients=["ann@example.com"],
        from_email="news@example.com",
    )
    assert mailer_ids(tags=["database"], databases=["default"]) == ["mailer.W001"]
    # Ordinary checks never touch the database.
    assert mailer_ids() == []


# -- one row per setting: a bad value, its id, and what the message shows -------
# The message names the setting and the value, except where the value holds a
# password (MAILER_BOUNCE_IMAP): then the part at fault.

BAD_VALUES = [
    ("MAILER_EMAIL_BACKEND", "mailer.backends.Nope", "mailer.E201"),
    ("MAILER_SEND_USING", "", "mailer.E002"),
    ("MAILER_BACKEND_PRIORITY", "urgent", "mailer.E202"),
    ("MAILER_DEFAULT_PRIORITY", None, "mailer.E203"),
    ("MAILER_MAX_MESSAGE_BYTES", "10MB", "mailer.E204"),
    ("MAILER_EMAIL_MAX_BATCH", 0, "mailer.E205"),
    ("MAILER_EMAIL_MAX_SECONDS", -1, "mailer.E206"),
    ("MAILER_RATE", "fast", "mailer.E207"),
    ("MAILER_EMAIL_THROTTLE", -0.5, "mailer.E208"),
    ("MAILER_BATCH_SIZE", 0, "mailer.E218"),
    ("MAILER_CONNECTIONS", 0, "mailer.E006"),
    ("MAILER_LEASE_SECONDS", "90", "mailer.E010"),
    ("MAILER_SMTP_TIMEOUT", 0, "mailer.E215"),
    ("MAILER_IN_DOUBT_RETRY_SECONDS", -1, "mailer.E216"),
    ("MAILER_IN_DOUBT_MAX_RETRIES", 1.5, "mailer.E217"),
    ("MAILER_MAX_ATTEMPTS", 0, "mailer.E219"),
    ("MAILER_MAX_RETRY_SECONDS", "3 days", "mailer.E220"),
    ("MAILER_RETRY_BACKOFF_SECONDS", 0, "mailer.E221"),
    ("MAILER_RETRY_BACKOFF_MAX_SECONDS", None, "mailer.E222"),
    ("MAILER_LOOP_IDLE_SECONDS", 0, "mailer.E223"),
    ("MAILER_SUPPRESS_ON_NO_SUCH_USER", "False", "mailer.E224"),
    ("MAILER_SENT_BODY_RETENTION_SECONDS", -1, "mailer.E225"),
    ("MAILER_EXPAND_CHUNK_SIZE", 0, "mailer.E230"),
    ("MAILER_RESEND_GUARD", timedelta(hours=-1), "mailer.E231"),
    ("MAILER_SITE_URL", "news.example.com", "mailer.E003"),
    ("MAILER_UNSUBSCRIBE_MAILTO", "unsubscribe", "mailer.E232"),
    ("MAILER_LIST_ID_DOMAIN", "news example", "mailer.E233"),
    ("MAILER_RATE_LIMITS", {"week": 5}, "mailer.E020"),
    ("MAILER_DOMAIN_RATE", {"gmail.com": "300"}, "mailer.E020"),
    ("MAILER_RATE_WAIT_SECONDS", -5, "mailer.E234"),
    ("MAILER_RELAY_BACKOFF_SECONDS", "30s", "mailer.E235"),
    ("MAILER_RELAY_BACKOFF_MAX_SECONDS", -1, "mailer.E236"),
    ("MAILER_HELO_NAME", "mail server", "mailer.E237"),
    ("MAILER_SSL_CA_FILE", "/nonexistent/ca.pem", "mailer.E021"),
    ("MAILER_POLL_SECONDS", 0, "mailer.E226"),
    ("MAILER_USE_TASKS", "yes", "mailer.E227"),
    ("MAILER_TASK_BACKEND", None, "mailer.E005"),
    ("MAILER_TASK_LEASE_SECONDS", 0, "mailer.E228"),
    ("MAILER_STATUS_MAX_AGE", "1h", "mailer.E229"),
    ("MAILER_PAUSE_SEND", "False", "mailer.E211"),
    ("MAILER_WRITE_BEHIND", "no", "mailer.E242"),
    ("MAILER_EMAIL_MAX_DEFERRED", 0, "mailer.E209"),
    ("MAILER_EMAIL_MAX_RETRIES", -1, "mailer.E210"),
    ("MAILER_ERROR_HANDLER", "tests.nowhere.handler", "mailer.E212"),
    ("MAILER_EMPTY_QUEUE_SLEEP", -1, "mailer.E213"),
    ("MAILER_MESSAGES_BATCH_SIZE", 0, "mailer.E214"),
    ("MAILER_BOUNCE_ADDRESS", "bounces+x@news.example", "mailer.E031"),
    ("MAILER_SOFT_BOUNCE_LIMIT", 0, "mailer.E238"),
    ("MAILER_SOFT_BOUNCE_DAYS", 0, "mailer.E239"),
    ("MAILER_BOUNCE_IMAP", {"host": "imap.example.com", "pasword": "x"}, "mailer.E240"),
    ("MAILER_BOUNCE_MAILDIR", 42, "mailer.E241"),
    ("MAILER_DKIM_KEY_FILE", 42, "mailer.E030"),
    ("MAILER_DKIM_SELECTOR", None, "mailer.E030"),
    ("MAILER_DKIM_DOMAIN", "news example", "mailer.E030"),
    ("MAILER_SUBSCRIPTIONS_CONFIRM_DAYS", 0, "mailer_subscriptions.E002"),
    ("MAILER_SUBSCRIPTIONS_RESEND_MINUTES", "60", "mailer_subscriptions.E003"),
    ("MAILER_SUBSCRIPTIONS_RATE_LIMIT", (10,), "mailer_subscriptions.E004"),
]
SHOWN = {"MAILER_BOUNCE_IMAP": "'pasword'"}


@pytest.fixture
def configured(settings):
    """The suite's settings with the real sending backend, which pass."""
    point_mail_at(settings, 25)
    return settings


@pytest.mark.parametrize(
    "name, value, check_id", BAD_VALUES, ids=[row[0] for row in BAD_VALUES]
)
def test_a_bad_value_is_reported_by_its_settings_id(configured, name, value, check_id):
    setattr(configured, name, value)

    (error,) = mailer_messages()

    assert error.id == check_id
    assert error.msg.startswith(f"{name}: ")
    assert SHOWN.get(name, repr(value)) in error.msg
    assert error.hint


def test_a_duration_that_is_no_number_names_both_forms(configured):
    """MAILER_RESEND_GUARD takes seconds or a timedelta: the error says so."""
    configured.MAILER_RESEND_GUARD = "1 hour"

    (error,) = mailer_messages()

    assert error.id == "mailer.E231"
    assert "seconds" in error.msg and "timedelta" in error.msg


@pytest.mark.parametrize("name", [row[0] for row in BAD_VALUES])
def test_the_default_passes(configured, name):
    if hasattr(configured, name):
        delattr(configured, name)
    assert mailer_ids() == []


def test_every_setting_of_conf_has_a_row_and_a_test():
    properties = {name for name in vars(MailerSettings) if name.startswith("MAILER_")}
    assert {row.name for row in SETTINGS} == properties
    tested = {name for name, _value, _id in BAD_VALUES}
    assert properties <= tested


def test_the_readme_settings_tables_give_each_settings_id():
    from mailer.subscriptions.checks import SETTINGS as SUBSCRIPTION_SETTINGS

    readme = (Path(__file__).parents[1] / "README.rst").read_text()
    # A row of a settings table: the setting, then its check id.
    ids = dict(
        line.split()[:2]
        for line in readme.splitlines()
        if line.startswith("``MAILER_") and line.split()[1].startswith("mailer")
    )
    assert ids == {
        f"``{row.name}``": row.check_id for row in (*SETTINGS, *SUBSCRIPTION_SETTINGS)
    }


@pytest.mark.parametrize("value", [15, 2.5, None], ids=["int", "float", "None"])
def test_good_values_pass(configured, value):
    configured.MAILER_EMAIL_MAX_SECONDS = value
    configured.MAILER_STATUS_MAX_AGE = value
    configured.MAILER_POLL_SECONDS = value
    assert mailer_ids() == []


def test_good_values_of_every_kind_pass(configured, tmp_path):
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text("-----BEGIN CERTIFICATE-----\n")
    for name, value in {
        "MAILER_EMAIL_BACKEND": "anymail.backends.test.EmailBackend",
        "MAILER_BACKEND_PRIORITY": "deferred",
        "MAILER_DEFAULT_PRIORITY": 3,
        "MAILER_PAUSE_SEND": 0,
        "MAILER_RESEND_GUARD": 600,
        "MAILER_SITE_URL": "http://127.0.0.1:8000/news/",
        "MAILER_UNSUBSCRIBE_MAILTO": "unsubscribe@news.example.com",
        "MAILER_LIST_ID_DOMAIN": "bücher.example",
        "MAILER_HELO_NAME": "[192.0.2.1]",
        "MAILER_SSL_CA_FILE": str(ca_file),
        "MAILER_RATE_LIMITS": {"second": 14, "day": 50000},
        "MAILER_DOMAIN_RATE": {"default": 600, "gmail.com": 300},
        "MAILER_ERROR_HANDLER": "tests.test_checks.error_handler",
        "MAILER_BOUNCE_ADDRESS": "bounces@news.example.com",
        "MAILER_BOUNCE_IMAP": {"host": "imap.example", "user": "u", "password": "p"},
        "MAILER_SUBSCRIPTIONS_RATE_LIMIT": [5, 60],
    }.items():
        setattr(configured, name, value)
    assert mailer_ids() == []


def error_handler(connection, message, exc):
    """A django-mailer error handler (``MAILER_ERROR_HANDLER``)."""
    return connection, "failure"


def test_a_bad_value_stops_manage_py_check_with_its_id_not_a_traceback(configured):
    # conf.MAILER_SMTP_TIMEOUT does float(value): the check reports the value
    # instead, and the lease check, which reads it, stays silent.
    configured.MAILER_SMTP_TIMEOUT = "fast"
    with pytest.raises(
        SystemCheckError, match=r"\(mailer\.E215\) MAILER_SMTP_TIMEOUT: 'fast' is not"
    ):
        call_command("check")


def test_several_bad_values_are_each_reported_once(configured):
    configured.MAILER_SITE_URL = 5
    configured.MAILER_SEND_USING = ["smtp"]
    configured.MAILER_USE_TASKS = "yes"
    configured.MAILER_DKIM_KEY_FILE = 42
    configured.MAILER_LEASE_SECONDS = "long"
    assert sorted(mailer_ids()) == [
        "mailer.E002",
        "mailer.E003",
        "mailer.E010",
        "mailer.E030",
        "mailer.E227",
    ]


def test_a_bad_django_email_timeout_is_reported_by_the_lease_check(configured):
    if MAILERS:
        # A new dict: the settings fixture restores settings, not their insides.
        alias = configured.MAILER_SEND_USING
        smtp = configured.MAILERS[alias]
        configured.MAILERS = {
            **configured.MAILERS,
            alias: {**smtp, "OPTIONS": {**smtp["OPTIONS"], "timeout": "ten"}},
        }
    else:
        configured.EMAIL_TIMEOUT = "ten"
    (error,) = mailer_messages()
    assert error.id == "mailer.E010"
    assert "'ten'" in error.msg


def test_a_validator_or_reader_that_fails_is_reported_not_raised(settings):
    settings.MAILER_TEST_ONLY = 1

    def broken(value):
        raise KeyError("surprise")

    rows = [
        SettingCheck("MAILER_TEST_ONLY", "mailer.E998", broken),
        SettingCheck("MAILER_TEST_ONLY", "mailer.E999", int, read=lambda: 1 / 0),
    ]
    checked, read = check_values(rows)
    assert checked.msg == (
        "MAILER_TEST_ONLY: 1 cannot be checked (KeyError: 'surprise')."
    )
    assert read.msg == (
        "MAILER_TEST_ONLY: 1 cannot be read (ZeroDivisionError: division by zero)."
    )
