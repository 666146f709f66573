"""Settings without ``ROOT_URLCONF`` (a worker-only settings module): mail
still goes out, job mail without its unsubscribe link, and ``manage.py
check`` says why (``mailer.W002``). ``send_mail`` died with AttributeError
(issue 12, item 9)."""

from __future__ import annotations

import logging
from io import StringIO

import pytest
from django.core.checks import run_checks
from django.core.management import call_command

import mailer
from mailer.jobs.expand import expand_pending_jobs
from mailer.jobs.services import RenderedEmail, create_job
from tests.conftest import by_recipient, point_mail_at

pytestmark = pytest.mark.django_db

#: This module doubles as a URLconf without the mailer's URLs.
urlpatterns: list = []


def mailer_warnings() -> list[tuple[str, str]]:
    return [(m.id, m.msg) for m in run_checks() if m.id.startswith("mailer.")]


def test_send_mail_without_root_urlconf_sends_without_the_link(
    mailserver, settings, caplog
):
    del settings.ROOT_URLCONF
    mailer.send_mail("Reset", "Your link", "news@example.com", ["ann@example.com"])
    create_job(
        content=RenderedEmail(subject="News", body_text="Hi [[mj:name]]"),
        recipients=[{"email": "bob@example.com", "name": "Bob"}],
    )
    expand_pending_jobs()

    with caplog.at_level(logging.WARNING, logger="mailer.unsubscribe"):
        call_command("send_mail", stdout=StringIO())

    received = {a: m.message for a, m in by_recipient(mailserver.messages).items()}
    assert received["ann@example.com"]["Subject"] == "Reset"
    job_mail = received["bob@example.com"]
    assert job_mail.get_content().startswith("Hi Bob")
    assert job_mail["List-Unsubscribe"] is None
    assert job_mail["List-Unsubscribe-Post"] is None
    assert "settings have no ROOT_URLCONF" in caplog.text


def test_w002_names_the_missing_root_urlconf(settings):
    point_mail_at(settings, 25)
    del settings.ROOT_URLCONF
    assert mailer_warnings() == [
        (
            "mailer.W002",
            "Job mail goes out without one-click unsubscribe links: settings have "
            "no ROOT_URLCONF, so the unsubscribe view's URL cannot be reversed.",
        )
    ]


def test_w002_names_a_urlconf_without_the_mailer_urls(settings):
    point_mail_at(settings, 25)
    settings.ROOT_URLCONF = __name__
    [(check_id, message)] = mailer_warnings()
    assert check_id == "mailer.W002"
    assert "include('mailer.urls') is missing" in message


def test_without_a_site_url_there_is_no_link_to_warn_about(settings):
    point_mail_at(settings, 25)
    del settings.ROOT_URLCONF
    settings.MAILER_SITE_URL = None
    assert mailer_warnings() == []
