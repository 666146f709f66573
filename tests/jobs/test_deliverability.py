"""Deliverability: RFC 8058 one-click unsubscribe, suppression that learns, and
the headers mailbox providers expect. Every check parses the bytes the real
SMTP server received."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from django.core import signing
from django.test import Client

from mailer.jobs.expand import expand_pending_jobs
from mailer.jobs.services import RenderedEmail, create_job
from mailer.models import (
    DontSendEntry,
    LogResult,
    Message,
    MessageLog,
    MessageStatus,
    SuppressionReason,
)
from mailer.sending.engine import send_queued
from mailer.signals import unsubscribed
from mailer.unsubscribe.tokens import make_token, read_token
from tests.conftest import by_recipient
from tests.testapp.models import Story

pytestmark = pytest.mark.django_db

UNSUBSCRIBE_URL = re.compile(r"<(https://news\.example\.com/mail/unsubscribe/[^>]+/)>")


def newsletter(recipients, *, html="<p>Hello [[mj:name]]</p>", story=None, **kw):
    content = RenderedEmail(
        subject="Morning headlines",
        body_text="Hello [[mj:name]]\nUnsubscribe: [[mj:unsubscribe_url]]\n",
        body_html=html,
    )
    return create_job(
        content=content,
        recipients=recipients,
        from_email="The Daily <news@example.com>",
        announced_object=story,
        **kw,
    )


def deliver():
    expand_pending_jobs()
    return send_queued()


def unsubscribe_url(received) -> str:
    match = UNSUBSCRIBE_URL.search(str(received.message["List-Unsubscribe"]))
    assert match, received.message["List-Unsubscribe"]
    return match.group(1)


def one_click(url: str):
    """POST exactly as a mailbox provider does (RFC 8058 section 3.2)."""
    client = Client(enforce_csrf_checks=True)
    return client.post(
        urlsplit(url).path,
        data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )


def test_job_mail_carries_one_click_unsubscribe_headers(mailserver):
    story = Story.objects.create(headline="Council votes")
    newsletter(["ann@example.com", "bob@example.com"], story=story)
    deliver()

    received = {a: r.message for a, r in by_recipient(mailserver.messages).items()}
    assert set(received) == {"ann@example.com", "bob@example.com"}
    urls = set()
    for address, message in received.items():
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        url = UNSUBSCRIBE_URL.search(str(message["List-Unsubscribe"])).group(1)
        urls.add(url)
        token = url.rstrip("/").rsplit("/", 1)[1]
        assert read_token(token).address == address
        # The same URL is offered in the body, for readers.
        assert url in message.get_body(("plain",)).get_content()
    assert len(urls) == 2


def test_mailto_form_is_added_when_configured(mailserver, settings):
    settings.MAILER_UNSUBSCRIBE_MAILTO = "unsubscribe@example.com"
    newsletter(["ann@example.com"])
    deliver()

    header = str(mailserver.messages[0].message["List-Unsubscribe"])
    assert header.startswith("<https://news.example.com/mail/unsubscribe/")
    assert "<mailto:unsubscribe@example.com?subject=unsubscribe>" in header


def test_standard_headers_on_job_mail(mailserver):
    story = Story.objects.create(headline="Council votes")
    newsletter(["ann@example.com"], story=story)
    deliver()

    message = mailserver.messages[0].message
    assert message["List-Id"] == "<story.news.example.com>"
    assert re.fullmatch(r"<[^@>]+@news\.example\.com>", message["Message-ID"])
    assert message["Date"].datetime is not None
    assert message.get_content_type() == "multipart/alternative"
    kinds = [part.get_content_type() for part in message.iter_parts()]
    assert kinds == ["text/plain", "text/html"]
    # The Message row keeps the Message-ID, so bounces map back to it.
    stored = Message.all_objects.get()
    assert f"<{stored.message_id.strip('<>')}>" == message["Message-ID"]
    log = MessageLog.objects.get(result=LogResult.SENT)
    assert log.message_id == stored.message_id


def test_single_emails_have_message_id_and_date(mailserver):
    import mailer

    mailer.send_mail("Hi", "Body", "news@example.com", ["ann@example.com"])
    send_queued()
    message = mailserver.messages[0].message
    assert message["Message-ID"]
    assert message["Date"].datetime is not None
    assert Message.all_objects.get().message_id == message["Message-ID"]


def test_html_only_job_gets_a_readable_text_part(mailserver):
    from mailer.jobs.services import render_email

    content = render_email(
        subject="Headlines",
        text_template=None,
        html_template="testapp/html_only.html",
        obj=Story(headline="Bridge reopens"),
    )
    create_job(content=content, recipients=["ann@example.com"])
    deliver()

    message = mailserver.messages[0].message
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "<" not in text
    assert "Bridge reopens" in text and "Bridge reopens" in html
    assert "(https://example.com/bridge)" in text


def test_one_click_post_unsubscribes_and_the_next_job_skips_the_address(
    mailserver,
):
    newsletter(["ann@example.com", "bob@example.com"])
    deliver()
    ann = next(r for r in mailserver.messages if r.rcpt_tos == ["ann@example.com"])
    heard = []
    unsubscribed.connect(
        lambda sender, address, job, **kw: heard.append((address, job.pk)),
        weak=False,
        dispatch_uid="test-heard",
    )
    try:
        response = one_click(unsubscribe_url(ann))
    finally:
        unsubscribed.disconnect(dispatch_uid="test-heard")

    assert response.status_code == 200
    entry = DontSendEntry.objects.get()
    assert (entry.address, entry.reason) == (
        "ann@example.com",
        SuppressionReason.UNSUBSCRIBED,
    )
    assert heard == [("ann@example.com", Message.all_objects.first().job_id)]

    mailserver.reset()
    newsletter(["ANN@example.com", "bob@example.com"])
    deliver()
    assert [r.rcpt_tos for r in mailserver.messages] == [["bob@example.com"]]
    skipped = MessageLog.objects.get(result=LogResult.SKIPPED)
    assert skipped.recipient == "ANN@example.com"
    assert "don't-send" in skipped.reply


def test_one_click_is_idempotent(mailserver):
    newsletter(["ann@example.com"])
    deliver()
    url = unsubscribe_url(mailserver.messages[0])
    assert one_click(url).status_code == 200
    assert one_click(url).status_code == 200
    assert DontSendEntry.objects.count() == 1


def test_pending_messages_to_an_unsubscribed_address_are_not_sent(mailserver):
    newsletter(["ann@example.com", "bob@example.com"])
    expand_pending_jobs()
    token = make_token("ann@example.com", None)
    assert (
        one_click(f"https://news.example.com/mail/unsubscribe/{token}/").status_code
        == 200
    )

    result = send_queued()

    assert [r.rcpt_tos for r in mailserver.messages] == [["bob@example.com"]]
    assert result.suppressed == 1
    ann = Message.all_objects.get(to_address="ann@example.com")
    assert ann.status == MessageStatus.SUPPRESSED
    assert MessageLog.objects.filter(
        result=LogResult.SUPPRESSED, recipient="ann@example.com"
    ).exists()


def test_get_shows_a_confirmation_and_changes_nothing(client):
    token = make_token("ann@example.com", None)
    response = client.get(f"/mail/unsubscribe/{token}/")
    assert response.status_code == 200
    assert b'<form method="post"' in response.content
    assert b"ann@example.com" in response.content
    assert not DontSendEntry.objects.exists()


@pytest.mark.parametrize("method", ["get", "post"])
def test_a_tampered_token_is_rejected(client, method):
    token = make_token("ann@example.com", 7)
    payload, signature = token.rsplit(":", 1)
    forged_for_bob = signing.b64_encode(b'["bob@example.com",7]').decode()
    for bad in (
        token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
        f"{forged_for_bob}:{signature}",
        "not-a-token",
    ):
        response = getattr(client, method)(f"/mail/unsubscribe/{bad}/")
        assert response.status_code == 404, bad
    assert not DontSendEntry.objects.exists()


def test_a_token_signed_with_another_key_is_rejected(client, settings):
    token = make_token("ann@example.com", None)
    settings.SECRET_KEY = "another-secret-key-entirely"
    assert client.post(f"/mail/unsubscribe/{token}/").status_code == 404


def test_no_such_user_bounce_learns_the_address(mailserver):
    mailserver.reject(["gone@example.com"], code=550, reply="5.1.1 No such user")
    newsletter(["gone@example.com", "ann@example.com"])
    deliver()

    entry = DontSendEntry.objects.get()
    assert entry.address == "gone@example.com"
    assert entry.reason == SuppressionReason.BOUNCED
    assert "5.1.1" in entry.note


def test_other_permanent_failures_do_not_suppress(mailserver):
    mailserver.reject(["full@example.com"], code=552, reply="5.2.2 Mailbox full")
    newsletter(["full@example.com"])
    deliver()
    assert not DontSendEntry.objects.exists()
    assert Message.all_objects.get().status == MessageStatus.FAILED


def test_learning_from_bounces_can_be_switched_off(mailserver, settings):
    settings.MAILER_SUPPRESS_ON_NO_SUCH_USER = False
    mailserver.reject(["gone@example.com"], code=550, reply="5.1.1 No such user")
    newsletter(["gone@example.com"])
    deliver()
    assert not DontSendEntry.objects.exists()


@pytest.mark.parametrize(
    "event_type, reason",
    [
        ("bounced", "bounced"),
        ("complained", "complained"),
        ("unsubscribed", "unsubscribed"),
    ],
)
def test_anymail_tracking_events_suppress_the_address(event_type, reason):
    from anymail.signals import AnymailTrackingEvent, tracking

    event = AnymailTrackingEvent(
        event_type=event_type,
        recipient="Reader@Example.com",
        message_id="abc123",
        description="from the ESP",
    )
    tracking.send(sender=object, event=event, esp_name="TestESP")

    entry = DontSendEntry.objects.get()
    assert (entry.address, entry.reason) == ("reader@example.com", reason)


def test_anymail_delivered_events_change_nothing():
    from anymail.signals import AnymailTrackingEvent, tracking

    event = AnymailTrackingEvent(event_type="delivered", recipient="a@example.com")
    tracking.send(sender=object, event=event, esp_name="TestESP")
    assert not DontSendEntry.objects.exists()
