"""What a non-SMTP backend's ``send_messages`` return value means (issue 12
item 8): None is "sent", as Django's own callers treat it (several
third-party backends return None after sending); 0 without an exception is
the backend saying it sent nothing, so the message is deferred and retried."""

from __future__ import annotations

import pytest
from django.core.mail.backends.base import BaseEmailBackend

import mailer
from mailer.models import LogResult, Message, MessageLog, MessageStatus
from mailer.sending.engine import send_queued

pytestmark = pytest.mark.django_db

#: Subjects of what the backends below were handed.
handed: list[str] = []


class ReturnsNone(BaseEmailBackend):
    def send_messages(self, email_messages):
        handed.extend(m.subject for m in email_messages)
        return None


class ReturnsZero(BaseEmailBackend):
    def send_messages(self, email_messages):
        handed.extend(m.subject for m in email_messages)
        return 0


@pytest.fixture(autouse=True)
def clean():
    handed.clear()


def use(settings, backend: type) -> None:
    path = f"{__name__}.{backend.__name__}"
    if hasattr(settings, "MAILERS"):
        settings.MAILERS = {
            "default": {"BACKEND": "mailer.backend.DbBackend"},
            "smtp": {"BACKEND": path},
        }
    else:
        settings.EMAIL_BACKEND = "mailer.backend.DbBackend"
        settings.MAILER_EMAIL_BACKEND = path


def test_a_backend_that_returns_none_has_sent_the_message(settings):
    use(settings, ReturnsNone)
    mailer.send_mail("Hello", "Body", "news@example.com", ["ann@example.com"])

    result = send_queued()

    assert (result.sent, result.deferred) == (1, 0)
    assert handed == ["Hello"]
    assert Message.all_objects.get().status == MessageStatus.SENT
    assert MessageLog.objects.get().result == LogResult.SENT
    assert send_queued().attempted == 0  # not sent again


def test_a_backend_that_returns_0_has_not_sent_it_and_it_is_deferred(settings):
    use(settings, ReturnsZero)
    mailer.send_mail("Hello", "Body", "news@example.com", ["ann@example.com"])

    result = send_queued()

    assert (result.sent, result.deferred) == (0, 1)
    message = Message.all_objects.get()
    assert (message.status, message.attempts) == (MessageStatus.DEFERRED, 1)
    log = MessageLog.objects.get()
    assert log.result == LogResult.DEFERRED
    assert log.reply == "SMTPException: the email backend reported nothing sent"
