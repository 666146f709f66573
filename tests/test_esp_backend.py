"""Any Django email backend can be the sender: here django-anymail's test
backend, standing in for an ESP's HTTP API. It gets a structured
EmailMessage, and the ESP's message id is kept on the Message."""

from __future__ import annotations

import django
import pytest

import mailer
from mailer.engine import send_queued
from mailer.expand import expand_pending_jobs
from mailer.jobs import RenderedEmail, create_job
from mailer.models import Message, MessageStatus

pytestmark = pytest.mark.django_db

ANYMAIL_TEST_BACKEND = "anymail.backends.test.EmailBackend"


@pytest.fixture
def esp(settings):
    from django.core import mail

    if django.VERSION >= (6, 1):
        settings.MAILERS = {
            **settings.MAILERS,
            "smtp": {"BACKEND": ANYMAIL_TEST_BACKEND},
        }
    else:
        settings.MAILER_EMAIL_BACKEND = ANYMAIL_TEST_BACKEND
    settings.ANYMAIL = {}
    mail.outbox = []
    return mail.outbox


def test_single_and_job_mail_go_through_an_esp_backend(esp):
    mailer.send_html_mail(
        "Weekly", "Plain text", "<p>HTML</p>", "news@example.com", ["a@example.com"]
    )
    create_job(
        content=RenderedEmail(
            subject="Hi [[mj:name]]",
            body_text="Hello [[mj:name]]",
            body_html="<p>Hello [[mj:name]]</p>",
        ),
        recipients=[{"email": "b@example.com", "name": "Bea"}],
        from_email="The Daily <news@example.com>",
    )
    expand_pending_jobs()

    result = send_queued()

    assert result.sent == 2
    by_to = {m.to[0]: m for m in esp}
    single = by_to["a@example.com"]
    assert (single.subject, single.body.rstrip("\n")) == ("Weekly", "Plain text")
    assert single.alternatives[0][0].rstrip("\n") == "<p>HTML</p>"
    job_mail = by_to["Bea <b@example.com>"]
    assert job_mail.subject == "Hi Bea"
    assert job_mail.body.rstrip("\n") == "Hello Bea"
    assert "List-Unsubscribe" in job_mail.extra_headers
    for message in Message.all_objects.all():
        assert message.status == MessageStatus.SENT
        assert message.provider_id  # the ESP's id, for webhooks
    assert {m.provider_id for m in Message.all_objects.all()} == {
        str(m.anymail_status.message_id) for m in esp
    }
