"""Any Django email backend can be the sender: here django-anymail's test
backend, standing in for an ESP's HTTP API. It gets a structured
EmailMessage, and the ESP's message id is kept on the Message."""

from __future__ import annotations

import email.policy

import django
import pytest

import mailer
from mailer.jobs.expand import expand_pending_jobs
from mailer.jobs.services import RenderedEmail, create_job
from mailer.models import Message, MessageStatus
from mailer.sending.engine import send_queued

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
    assert sorted(m.to[0] for m in esp) == sorted({m.to[0] for m in esp})  # once each
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


# -- the round trip: stored bytes -> EmailMessage (issue 12, item 4) ---------

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
PDF = b"%PDF-1.4\n" + bytes(range(256))


def inline_image(filename: str | None):
    """An inline image as Django documents it for this version: a ``MIMEPart``
    on 6.0+, a ``MIMEImage`` (``MIMEBase``) on 5.2."""
    if django.VERSION >= (6, 0):
        from email.message import MIMEPart

        part = MIMEPart()
        part.set_content(
            PNG,
            maintype="image",
            subtype="png",
            disposition="inline",
            filename=filename,
            cid="<logo@example.com>",
        )
        return part
    from email.mime.image import MIMEImage

    part = MIMEImage(PNG, "png")
    part.add_header("Content-ID", "<logo@example.com>")
    if filename:
        part.add_header("Content-Disposition", "inline", filename=filename)
    else:
        part.add_header("Content-Disposition", "inline")
    return part


def plain_email():
    from django.core.mail import EmailMessage

    return EmailMessage(
        "Hi", "Body", "news@example.com", ["Ann Example <ann@example.com>"]
    )


def rich_email(filename: str | None = "logo.png"):
    from django.core.mail import EmailMultiAlternatives

    message = EmailMultiAlternatives(
        "Zoë's report",
        "See the logo.\n",
        "The Daily <news@example.com>",
        ["Zoë Doe <zoe@example.org>", "ann@example.com"],
        bcc=["Hidden Person <hidden@example.com>", "h2@example.com"],
        cc=["Cecil <cecil@example.com>"],
        reply_to=["Desk <desk@example.com>"],
        headers={"X-Campaign": "spring"},
    )
    message.attach_alternative(
        '<p><img src="cid:logo@example.com"> Hi</p>', "text/html"
    )
    if django.VERSION < (6, 0):
        # Django 5.2's way to multipart/related (RFC 2387); 6.0 puts inline
        # parts in multipart/mixed (see the hand-built related email below).
        message.mixed_subtype = "related"
    message.attach(inline_image(filename))
    message.attach("report.pdf", PDF, "application/pdf")
    message.attach("notes.txt", "Line one\nLine two\n", "text/plain")
    return message


def received(params) -> dict:
    """What anymail handed the ESP, comparable: line ends and the final line
    break of text (Django 6 adds one when it serialises) left out, and the
    Date and Message-ID the queue fixed when it stored the email. Bcc is
    compared by addr-spec: the queue keeps the envelope, not Bcc's display
    names, which no reader ever sees (Bcc is in no header)."""

    def addresses(key):
        return [a.address for a in params.get(key, [])]

    def content(attachment):
        value = attachment.content
        if isinstance(value, str):
            value = value.replace("\r\n", "\n").rstrip("\n").encode()
        return value

    return {
        "from": params["from"].address,
        "to": addresses("to"),
        "cc": addresses("cc"),
        "bcc": [a.addr_spec for a in params.get("bcc", [])],
        "reply_to": addresses("reply_to"),
        "subject": params["subject"],
        "text": params.get("text_body", "").rstrip("\n"),
        "html": params.get("html_body", "").rstrip("\n"),
        "alternatives": params.get("alternatives", []),
        "attachments": [
            (a.name, a.mimetype, content(a), a.inline, a.content_id)
            for a in params.get("attachments", [])
        ],
        "headers": {
            k: v
            for k, v in params.get("extra_headers", {}).items()
            if k not in ("Date", "Message-ID")
        },
    }


def without_queue(esp, email_message) -> dict:
    from anymail.backends.test import EmailBackend

    EmailBackend().send_messages([email_message])
    return received(esp.pop().anymail_test_params)


def through_queue(esp, email_message) -> dict:
    from mailer.queue import enqueue

    enqueue(email_message)
    assert send_queued().sent == 1
    return received(esp.pop().anymail_test_params)


def test_a_named_recipient_is_not_also_a_bcc(esp):
    direct = without_queue(esp, plain_email())
    queued = through_queue(esp, plain_email())

    assert queued == direct
    assert (queued["to"], queued["bcc"]) == (["Ann Example <ann@example.com>"], [])


@pytest.mark.parametrize("filename", ["logo.png", None])
def test_an_html_email_with_an_inline_image_and_attachments_round_trips(esp, filename):
    direct = without_queue(esp, rich_email(filename))
    queued = through_queue(esp, rich_email(filename))

    assert queued == direct
    assert queued["to"] == ["Zoë Doe <zoe@example.org>", "ann@example.com"]
    assert queued["cc"] == ["Cecil <cecil@example.com>"]
    assert queued["bcc"] == ["hidden@example.com", "h2@example.com"]
    assert queued["attachments"] == [
        (filename, "image/png", PNG, True, "<logo@example.com>"),
        ("report.pdf", "application/pdf", PDF, False, None),
        ("notes.txt", "text/plain", b"Line one\nLine two", False, None),
    ]
    assert queued["headers"]["X-Campaign"] == "spring"


def test_a_job_reader_with_a_name_is_not_also_a_bcc(esp):
    create_job(
        content=RenderedEmail(subject="Hi", body_text="Hello [[mj:name]]"),
        recipients=[{"email": "b@example.com", "name": "Bea"}],
    )
    expand_pending_jobs()
    assert send_queued().sent == 1

    [sent] = esp
    params = received(sent.anymail_test_params)
    assert (params["to"], params["cc"], params["bcc"]) == (
        ["Bea <b@example.com>"],
        [],
        [],
    )
    assert params["text"] == "Hello Bea"


def related_bytes() -> bytes:
    """multipart/alternative with its HTML in multipart/related next to the
    image it shows (RFC 2387), as mail clients and templating apps build it."""
    from email.message import EmailMessage as StdlibEmailMessage

    built = StdlibEmailMessage(policy=email.policy.SMTP)
    built["Subject"] = "Logo"
    built["From"] = "news@example.com"
    built["To"] = "Ann Example <ann@example.com>"
    built["Date"] = "Sat, 28 Nov 2026 10:00:00 -0000"
    built["Message-ID"] = "<related@example.com>"
    built.set_content("See the logo.\n")
    built.add_alternative('<p><img src="cid:logo@example.com"></p>\n', subtype="html")
    html = built.get_payload()[1]
    html.add_related(PNG, "image", "png", cid="<logo@example.com>", filename="logo.png")
    return built.as_bytes()


def test_a_multipart_related_email_keeps_its_image_inline(esp):
    from django.core.mail import EmailMultiAlternatives

    direct_email = EmailMultiAlternatives(
        "Logo", "See the logo.\n", "news@example.com", ["Ann Example <ann@example.com>"]
    )
    direct_email.attach_alternative(
        '<p><img src="cid:logo@example.com"></p>\n', "text/html"
    )
    direct_email.attach(inline_image("logo.png"))
    direct = without_queue(esp, direct_email)
    data = related_bytes()
    assert b"multipart/related" in data
    Message.all_objects.create(
        to_address="ann@example.com",
        envelope_from="news@example.com",
        envelope_to=["ann@example.com"],
        subject="Logo",
        mime=data,
        message_id="<related@example.com>",
    )

    assert send_queued().sent == 1
    queued = received(esp.pop().anymail_test_params)

    assert queued == direct
    assert queued["attachments"] == [
        ("logo.png", "image/png", PNG, True, "<logo@example.com>")
    ]
