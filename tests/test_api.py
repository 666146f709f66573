"""The public API: django-mailer's functions, names and signatures, queueing
into the database and nothing more."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest
from django.utils.translation import gettext_lazy

import mailer
from mailer.exceptions import HeaderInjection, InvalidAddress
from mailer.models import Message, MessageStatus, Priority
from mailer.sending.engine import retry_deferred, send_queued
from tests.conftest import ROOT

pytestmark = pytest.mark.django_db


def text(part) -> str:
    """A text part's content with the wire's CRLF line endings made Python's,
    and exactly one final line break (Django 6 adds one, 5.2 does not)."""
    return part.get_content().replace("\r\n", "\n").rstrip("\n") + "\n"


#: django-mailer 2.x (pinax/django-mailer, src/mailer/__init__.py): the
#: parameters a project may pass, positionally or by name, in this order.
DJANGO_MAILER_SIGNATURES = {
    "send_mail": [
        "subject",
        "message",
        "from_email",
        "recipient_list",
        "priority",
        "fail_silently",
        "auth_user",
        "auth_password",
    ],
    "send_html_mail": [
        "subject",
        "message",
        "message_html",
        "from_email",
        "recipient_list",
        "priority",
        "fail_silently",
        "auth_user",
        "auth_password",
        "headers",
    ],
    "send_mass_mail": [
        "datatuple",
        "fail_silently",
        "auth_user",
        "auth_password",
        "connection",
    ],
    "mail_admins": ["subject", "message", "fail_silently", "connection", "priority"],
    "mail_managers": ["subject", "message", "fail_silently", "connection", "priority"],
}


@pytest.mark.parametrize("name", sorted(DJANGO_MAILER_SIGNATURES))
def test_the_functions_take_django_mailers_arguments_in_its_order(name):
    parameters = list(inspect.signature(getattr(mailer, name)).parameters)
    expected = DJANGO_MAILER_SIGNATURES[name]
    assert parameters[: len(expected)] == expected
    assert name in mailer.__all__


def test_importing_mailer_loads_neither_django_nor_the_models():
    # Settings files import mailer (for its constants) before Django is set up.
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, mailer; print(sorted(m for m in sys.modules "
            "if m.split('.')[0] == 'django' or m.startswith('mailer.')))",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "[]\n", "")


def test_send_mail_queues_one_message_and_sends_nothing():
    assert (
        mailer.send_mail(
            "Welcome", "Hello Ann.", "Site <site@example.com>", ["ann@example.com"]
        )
        == 1
    )

    message = Message.all_objects.get()
    assert message.subject == "Welcome"
    assert message.to_address == "ann@example.com"
    assert message.envelope_from == "site@example.com"
    assert message.envelope_to == ["ann@example.com"]
    assert message.priority == Priority.MEDIUM
    assert message.status == MessageStatus.QUEUED
    assert message.attempts == 0
    assert message.job_id is None
    assert b"Hello Ann." in bytes(message.mime)


def test_send_mail_delivers_the_text_as_written(mailserver):
    mailer.send_mail(
        "Welcome",
        "Hello Ann.\nSee you.",
        "Site <site@example.com>",
        ["ann@example.com", "bob@example.com"],
    )
    assert mailserver.count == 0  # queued, not sent

    assert send_queued().sent == 1

    (received,) = mailserver.messages
    assert received.mail_from == "site@example.com"
    assert received.rcpt_tos == ["ann@example.com", "bob@example.com"]
    parsed = received.message
    assert parsed["Subject"] == "Welcome"
    assert parsed["From"] == "Site <site@example.com>"
    assert parsed["To"] == "ann@example.com, bob@example.com"
    assert text(parsed) == "Hello Ann.\nSee you.\n"


def test_send_mail_without_a_sender_uses_default_from_email(mailserver, settings):
    settings.DEFAULT_FROM_EMAIL = "Newsroom <desk@example.com>"
    mailer.send_mail("Hi", "Body", None, ["ann@example.com"])
    send_queued()
    (received,) = mailserver.messages
    assert received.mail_from == "desk@example.com"
    assert received.message["From"] == "Newsroom <desk@example.com>"


def test_a_lazily_translated_subject_is_queued_as_text(mailserver):
    mailer.send_mail(gettext_lazy("Welcome"), "b", "a@example.com", ["b@example.com"])
    send_queued()
    assert mailserver.messages[0].message["Subject"] == "Welcome"


def test_send_html_mail_sends_both_versions_and_the_extra_headers(mailserver):
    assert (
        mailer.send_html_mail(
            "Weekly",
            "Plain version",
            "<p>HTML <b>version</b></p>",
            "news@example.com",
            ["ann@example.com"],
            headers={"X-Campaign": "weekly-42", "Reply-To": "desk@example.com"},
        )
        == 1
    )
    send_queued()

    parsed = mailserver.messages[0].message
    assert parsed.get_content_type() == "multipart/alternative"
    assert text(parsed.get_body(("plain",))) == "Plain version\n"
    assert text(parsed.get_body(("html",))) == "<p>HTML <b>version</b></p>\n"
    assert parsed["X-Campaign"] == "weekly-42"
    assert parsed["Reply-To"] == "desk@example.com"


def test_send_mass_mail_queues_one_message_per_tuple(mailserver):
    queued = mailer.send_mass_mail(
        [
            ("First", "One", "a@example.com", ["x@example.com"]),
            ("Second", "Two", "b@example.com", ["y@example.com", "z@example.com"]),
        ]
    )
    assert queued == 2
    assert send_queued().sent == 2
    assert sorted(
        (m.message["Subject"], tuple(m.rcpt_tos)) for m in mailserver.messages
    ) == [
        ("First", ("x@example.com",)),
        ("Second", ("y@example.com", "z@example.com")),
    ]


def test_send_mass_mail_checks_every_email_before_queueing_any():
    with pytest.raises(InvalidAddress, match="Invalid address 'not an address'"):
        mailer.send_mass_mail(
            [
                ("Fine", "One", "a@example.com", ["x@example.com"]),
                ("Broken", "Two", "a@example.com", ["not an address"]),
            ]
        )
    assert Message.all_objects.count() == 0


@pytest.mark.parametrize(
    "staff",
    [
        ["Ann <ann@example.com>", "bob@example.com"],
        [("Ann", "ann@example.com"), ("", "bob@example.com")],  # django-mailer style
    ],
)
@pytest.mark.parametrize(
    "function, setting", [("mail_admins", "ADMINS"), ("mail_managers", "MANAGERS")]
)
def test_mail_admins_and_managers_go_to_the_staff_from_server_email(
    mailserver, settings, function, setting, staff
):
    setattr(settings, setting, staff)
    settings.SERVER_EMAIL = "Server <root@example.com>"
    settings.EMAIL_SUBJECT_PREFIX = "[Site] "

    assert getattr(mailer, function)("Disk full", "Only 1% left.") == 1
    send_queued()

    (received,) = mailserver.messages
    assert received.mail_from == "root@example.com"
    assert received.rcpt_tos == ["ann@example.com", "bob@example.com"]
    assert received.message["Subject"] == "[Site] Disk full"
    assert received.message["To"].addresses[0].display_name == "Ann"


def test_mail_admins_without_admins_queues_nothing(settings):
    settings.ADMINS = []
    assert mailer.mail_admins("Disk full", "Only 1% left.") == 0
    assert Message.all_objects.count() == 0


@pytest.mark.parametrize(
    "priority, level",
    [
        ("high", Priority.HIGH),
        ("medium", Priority.MEDIUM),
        ("low", Priority.LOW),
        ("HIGH", Priority.HIGH),
        (None, Priority.MEDIUM),
        # django-mailer's PRIORITY_HIGH/MEDIUM/LOW constants are "1", "2", "3".
        ("1", Priority.HIGH),
        ("3", Priority.LOW),
        (Priority.LOW, Priority.LOW),
    ],
)
def test_priority_names_and_django_mailers_constants(priority, level):
    mailer.send_mail("Hi", "b", "a@example.com", ["b@example.com"], priority=priority)
    message = Message.all_objects.get()
    assert (message.priority, message.status) == (level, MessageStatus.QUEUED)


def test_the_default_priority_is_a_setting(settings):
    settings.MAILER_DEFAULT_PRIORITY = "low"
    mailer.send_mail("Hi", "b", "a@example.com", ["b@example.com"])
    assert Message.all_objects.get().priority == Priority.LOW


@pytest.mark.parametrize("priority", ["deferred", "4"])  # "4": PRIORITY_DEFERRED
def test_deferred_priority_holds_the_mail_until_retry_deferred(mailserver, priority):
    mailer.send_mail("Held", "b", "a@example.com", ["held@example.com"], priority)
    mailer.send_mail("Now", "b", "a@example.com", ["now@example.com"], "low")

    assert send_queued().sent == 1
    assert [m.rcpt_tos for m in mailserver.messages] == [["now@example.com"]]
    held = Message.all_objects.get(to_address="held@example.com")
    assert (held.status, held.attempts) == (MessageStatus.DEFERRED, 0)

    assert retry_deferred() == 1
    assert send_queued().sent == 1
    assert [m.rcpt_tos for m in mailserver.messages] == [
        ["now@example.com"],
        ["held@example.com"],
    ]


@pytest.mark.parametrize(
    "call",
    [
        lambda p: mailer.send_mail("s", "b", "a@example.com", ["b@example.com"], p),
        lambda p: mailer.send_html_mail(
            "s", "b", "<p>b</p>", "a@example.com", ["b@example.com"], priority=p
        ),
        lambda p: mailer.send_mass_mail(
            [("s", "b", "a@example.com", ["b@example.com"])], priority=p
        ),
        lambda p: mailer.mail_admins("s", "b", priority=p),
    ],
)
@pytest.mark.parametrize("priority", ["urgent", "5", 0])
def test_an_unknown_priority_is_a_value_error_and_queues_nothing(
    settings, call, priority
):
    settings.ADMINS = ["admin@example.com"]
    with pytest.raises(ValueError, match=f"Unknown priority {priority!r}"):
        call(priority)
    assert Message.all_objects.count() == 0


def test_fail_silently_returns_zero_for_an_invalid_email_and_queues_nothing():
    assert (
        mailer.send_mail("Hi", "b", "a@example.com", ["no-at-sign"], fail_silently=True)
        == 0
    )
    assert (
        mailer.send_html_mail(
            "Hi\nBcc: x@evil.example",
            "b",
            "<p>b</p>",
            "a@example.com",
            ["b@example.com"],
            fail_silently=True,
        )
        == 0
    )
    assert Message.all_objects.count() == 0


def test_without_fail_silently_the_error_names_the_problem():
    with pytest.raises(HeaderInjection, match="Header 'Subject' contains a line break"):
        mailer.send_mail("Hi\nBcc: x@evil.example", "b", "a@example.com", ["b@x.com"])
    assert Message.all_objects.count() == 0


def test_auth_arguments_are_accepted_and_the_mail_is_queued_all_the_same():
    assert (
        mailer.send_mail(
            "Hi",
            "b",
            "a@example.com",
            ["b@example.com"],
            auth_user="someone",
            auth_password="secret",
        )
        == 1
    )
    assert b"secret" not in bytes(Message.all_objects.get().mime)
