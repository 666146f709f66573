"""Security: who may queue a newsletter and how (permission, POST, CSRF); a
log that keeps no bodies; and a configuration that would loop mail forever,
refused by a system check before any command runs. (Unsubscribe tokens that
cannot be forged or moved: tests/unsubscribe/test_tokens.py.)"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission, User
from django.core.exceptions import PermissionDenied
from django.test import Client, RequestFactory

import mailer
from mailer.jobs.actions import email_update_action
from mailer.jobs.expand import expand_pending_jobs
from mailer.jobs.services import RenderedEmail, cancel_jobs, create_job
from mailer.models import DontSendEntry, LogResult, Message, MessageJob, MessageLog
from mailer.sending.engine import send_queued
from tests.conftest import ROOT
from tests.testapp.admin import StoryAdmin
from tests.testapp.models import Reader, Story

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/testapp/story/"


@pytest.fixture
def story(db) -> Story:
    Reader.objects.create(email="ann@example.com", name="Ann")
    Reader.objects.create(email="bob@example.com", name="Bob")
    return Story.objects.create(headline="Bridge reopens")


def staff_user(*codenames: str) -> User:
    user = User.objects.create_user("staff", "staff@example.com", "pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return User.objects.get(pk=user.pk)  # no stale permission cache


def action_data(story: Story, **extra) -> dict:
    return {"action": "send_email_update", "_selected_action": [story.pk], **extra}


# -- the admin action ----------------------------------------------------------------


def test_without_the_permission_the_action_is_neither_offered_nor_run(story):
    client = Client()
    client.force_login(staff_user("view_story", "change_story"))

    assert b"send_email_update" not in client.get(CHANGELIST).content
    for extra in ({}, {"post": "yes"}):
        response = client.post(CHANGELIST, action_data(story, **extra))
        assert response.status_code in (200, 302)
        assert b"Send email update" not in response.content
    assert not MessageJob.objects.exists()


def test_the_action_itself_refuses_a_user_without_the_permission(story):
    """Defence in depth: called directly (a custom admin wiring it up without
    Django's action permissions), it still refuses."""
    request = RequestFactory().post(CHANGELIST, action_data(story, post="yes"))
    request.user = staff_user("view_story", "change_story")
    story_admin = StoryAdmin(Story, admin.site)

    with pytest.raises(PermissionDenied):
        email_update_action(story_admin, request, Story.objects.all())
    assert not MessageJob.objects.exists()


def test_with_the_permission_a_post_with_its_csrf_token_queues_the_job(story):
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff_user("view_story", "add_messagejob"))
    page = client.get(CHANGELIST)
    assert b"send_email_update" in page.content
    token = client.cookies["csrftoken"].value

    confirm = client.post(CHANGELIST, action_data(story, csrfmiddlewaretoken=token))
    assert confirm.status_code == 200  # the confirmation page, nothing queued yet
    assert not MessageJob.objects.exists()
    done = client.post(
        CHANGELIST, action_data(story, post="yes", csrfmiddlewaretoken=token)
    )
    assert done.status_code == 302
    assert MessageJob.objects.get().recipient_count == 2


@pytest.mark.parametrize("extra", [{}, {"post": "yes"}, {"send_test": "1"}])
def test_a_post_without_the_csrf_token_is_refused(story, extra):
    boss = User.objects.create_superuser("boss", "boss@example.com", "pw")
    client = Client(enforce_csrf_checks=True)
    client.force_login(boss)

    assert client.post(CHANGELIST, action_data(story, **extra)).status_code == 403
    assert not MessageJob.objects.exists()
    assert not Message.all_objects.exists()  # nor a test email


def test_a_get_never_runs_the_action(story):
    boss = User.objects.create_superuser("boss", "boss@example.com", "pw")
    client = Client()
    client.force_login(boss)
    client.get(CHANGELIST, action_data(story, post="yes"))
    assert not MessageJob.objects.exists()


# -- the log keeps no bodies -----------------------------------------------------------

SECRET = "SECRET-RESET-TOKEN-8d1f0c"


def test_the_log_keeps_no_bodies_whatever_the_outcome(mailserver):
    mailserver.reject(["rejected@example.com"], 550, "5.1.1 No such user")
    mailserver.defer(["later@example.com"], 451, "4.3.0 Try later")
    body = f"Reset your password: https://example.com/reset/{SECRET}/"
    for to in ("sent@example.com", "rejected@example.com", "later@example.com"):
        mailer.send_html_mail("Reset", body, f"<a>{SECRET}</a>", "a@example.com", [to])
    DontSendEntry.objects.create(address="stopped@example.com")
    job = create_job(
        content=RenderedEmail(
            subject="News", body_text=f"{body} [[mj:code]]", body_html=f"<p>{SECRET}"
        ),
        recipients=[
            ("reader@example.com", {"code": SECRET}),
            "rejected@example.com",
            "stopped@example.com",
            "not an address",
            "cancelled@example.com",
            "unsubscribed@example.com",
        ],
    )
    expand_pending_jobs()
    DontSendEntry.objects.create(address="unsubscribed@example.com")
    Message.all_objects.filter(to_address="cancelled@example.com").update(
        due_at=None
    )  # held back, then cancelled with the job
    send_queued()
    cancel_jobs(MessageJob.objects.filter(pk=job.pk))
    # The relay stores a reset and hangs up before its reply: in doubt.
    mailserver.reset_after_data(times=1)
    mailer.send_html_mail(
        "Reset", body, f"<a>{SECRET}</a>", "a@example.com", ["doubt@example.com"]
    )
    assert send_queued().in_doubt == 1

    results = set(MessageLog.objects.values_list("result", flat=True))
    # Every kind of row sending writes (bounce and complaint rows come from
    # process_bounces: tests/bounces/test_bounces.py).
    later = {LogResult.BOUNCED, LogResult.SOFT_BOUNCED, LogResult.COMPLAINED}
    assert results == set(LogResult.values) - later
    for row in MessageLog.objects.values():
        for column, value in row.items():
            assert SECRET not in str(value), column
    fields = {f.name for f in MessageLog._meta.get_fields()}
    assert not fields & {"body", "body_text", "body_html", "mime", "context", "html"}


# -- the queue as its own sending backend ----------------------------------------------


LOOP_SETTINGS = """
import django
from tests.settings import *  # noqa: F403

if django.VERSION >= (6, 1):
    MAILERS = {**MAILERS, "smtp": {"BACKEND": "mailer.backend.DbBackend"}}
else:
    MAILER_EMAIL_BACKEND = "mailer.backend.DbBackend"
"""


def test_no_command_runs_with_the_queue_as_its_own_sender(tmp_path):
    """The real thing: ``manage.py check`` fails, and so does ``send_mail``
    before it touches the queue (Django runs the system checks first)."""
    (tmp_path / "loop_settings.py").write_text(LOOP_SETTINGS)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "loop_settings",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
    }
    for command in ("check", "send_mail"):
        done = subprocess.run(
            [sys.executable, "-m", "django", command],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1, (command, done.stderr)
        assert "mailer.E001" in done.stderr
        assert "SystemCheckError" in done.stderr or command == "check"


def test_the_job_message_id_is_the_salted_hmac_of_its_row():
    # The Message-ID's tag is derived with a cached key; it must stay what
    # django.utils.crypto.salted_hmac gives, so ids made before and after
    # this change (a message in doubt across an upgrade) are the same.
    from django.utils.crypto import salted_hmac

    from mailer.sending.build import MessageBuilder

    builder = MessageBuilder()
    message = Message(pk=5, job_id=3, message_id="")
    tag = salted_hmac("mailer.message-id", "3.5", algorithm="sha256").hexdigest()
    assert builder.message_id(message) == f"<3.5.{tag[:16]}@{builder.domain}>"
