"""System checks catch configurations that would loop or lose mail."""

from __future__ import annotations

import django
import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from mailer.backend import DbBackend
from mailer.jobs.services import RenderedEmail, create_job
from tests.conftest import point_mail_at

MAILERS = django.VERSION >= (6, 1)
SMTP = "django.core.mail.backends.smtp.EmailBackend"


class LowPriorityQueue(DbBackend):
    """A project's own queue backend, e.g. for bulk mail."""


def mailer_ids(**kwargs) -> list[str]:
    return [m.id for m in run_checks(**kwargs) if m.id.startswith("mailer.")]


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


def test_e003_a_site_url_that_is_not_absolute(settings):
    settings.MAILER_SITE_URL = "news.example.com"
    assert mailer_ids(tags=["database"], databases=["default"]) == ["mailer.E003"]


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
