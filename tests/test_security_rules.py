"""Security: who may queue a newsletter, what the log keeps, and a
configuration that would loop mail forever."""

from __future__ import annotations

import django
import pytest
from django.contrib.auth.models import Permission, User
from django.core.checks import run_checks
from django.test import Client

import mailer
from mailer.models import MessageJob, MessageLog
from mailer.sending.engine import send_queued
from tests.testapp.models import Reader, Story

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/testapp/story/"


@pytest.fixture
def story(db):
    Reader.objects.create(email="ann@example.com", name="Ann")
    return Story.objects.create(headline="Bridge reopens")


def confirm(client: Client, story: Story):
    return client.post(
        CHANGELIST,
        {"action": "send_email_update", "_selected_action": [story.pk], "post": "yes"},
    )


def test_staff_without_the_permission_cannot_queue_even_by_posting(story):
    staff = User.objects.create_user("staff", "s@example.com", "pw", is_staff=True)
    staff.user_permissions.add(
        Permission.objects.get(codename="view_story"),
        Permission.objects.get(codename="change_story"),
    )
    client = Client()
    client.force_login(staff)

    response = confirm(client, story)

    assert response.status_code in (200, 302)
    assert not MessageJob.objects.exists()


def test_the_action_needs_a_csrf_token(story):
    boss = User.objects.create_superuser("boss", "b@example.com", "pw")
    client = Client(enforce_csrf_checks=True)
    client.force_login(boss)

    assert confirm(client, story).status_code == 403
    assert not MessageJob.objects.exists()


def test_the_action_never_runs_on_get(story):
    boss = User.objects.create_superuser("boss", "b@example.com", "pw")
    client = Client()
    client.force_login(boss)
    client.get(
        CHANGELIST,
        {"action": "send_email_update", "_selected_action": story.pk, "post": "yes"},
    )
    assert not MessageJob.objects.exists()


def test_the_log_keeps_no_bodies(mailserver):
    secret = "https://example.com/reset/SECRET-TOKEN-123/"
    mailer.send_mail("Reset your password", f"Use {secret}", "a@x.com", ["b@x.com"])
    mailserver.reject(["c@x.com"], code=550, reply="5.1.1 No such user")
    mailer.send_mail("Reset", f"Use {secret}", "a@x.com", ["c@x.com"])
    send_queued()

    assert MessageLog.objects.count() == 2
    for log in MessageLog.objects.values():
        assert not any("SECRET-TOKEN" in str(value) for value in log.values())


def test_the_queue_as_its_own_sender_is_refused_by_a_system_check(settings):
    if django.VERSION >= (6, 1):
        settings.MAILERS = {
            **settings.MAILERS,
            "smtp": {"BACKEND": "mailer.backend.DbBackend"},
        }
    else:
        settings.MAILER_EMAIL_BACKEND = "mailer.backend.DbBackend"
    errors = [e for e in run_checks() if e.id.startswith("mailer.")]
    assert [e.id for e in errors] == ["mailer.E001"]
    assert "its own sending backend" in errors[0].msg


if django.VERSION >= (6, 1):  # MAILERS exists from Django 6.1

    def test_a_missing_sending_alias_is_refused_by_a_system_check(settings):
        settings.MAILER_SEND_USING = "nope"
        assert "mailer.E002" in [e.id for e in run_checks()]


def test_the_configured_project_passes_the_checks():
    assert [e.id for e in run_checks() if e.id.startswith("mailer.")] == []
