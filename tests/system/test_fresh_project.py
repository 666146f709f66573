"""The README's promise, literally: a brand-new Django project (made by
``django-admin startproject``) adds the app, queues mail through Django's own
``send_mail`` and through ``mailer.send_html_mail``, and ``manage.py
send_mail`` delivers each email exactly once to a real SMTP server. A 550
recipient fails for good; a 451 recipient goes out after ``retry_deferred``.
Every step is a separate process, as cron would run it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import django
import pytest

# A project of its own on its own SQLite file: the suite's database
# does not matter, so the PostgreSQL envs skip it.
pytestmark = pytest.mark.own_database


def content(part) -> str:
    """A part's text, CRLF line endings made plain and the final line break
    dropped (Django 6 adds one to each part, Django 5.2 does not)."""
    return part.get_content().replace("\r\n", "\n").rstrip("\n")


def manage(
    project: Path, *args: str, env: dict[str, str]
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def project(tmp_path: Path, smtp_server) -> tuple[Path, dict[str, str]]:
    subprocess.run(
        [sys.executable, "-m", "django", "startproject", "site_one", str(tmp_path)],
        check=True,
        timeout=60,
    )
    settings = tmp_path / "site_one" / "settings.py"
    mail_config = (
        f"""
        MAILERS = {{
            "default": {{"BACKEND": "mailer.backend.DbBackend"}},
            "smtp": {{
                "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
                "OPTIONS": {{"host": "127.0.0.1", "port": {smtp_server.port}}},
            }},
        }}
        MAILER_SEND_USING = "smtp"
        """
        if django.VERSION >= (6, 1)
        else f"""
        EMAIL_BACKEND = "mailer.backend.DbBackend"
        EMAIL_HOST = "127.0.0.1"
        EMAIL_PORT = {smtp_server.port}
        """
    )
    settings.write_text(
        settings.read_text()
        + textwrap.dedent(
            """
            INSTALLED_APPS += ["mailer"]
            DEFAULT_FROM_EMAIL = "Site <site@example.com>"
            MAILER_RETRY_BACKOFF_SECONDS = 3600
            """
        )
        + textwrap.dedent(mail_config)
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "PYTHONPATH")
    }
    env["PYTHONWARNINGS"] = "error::DeprecationWarning"
    migrated = manage(tmp_path, "migrate", "-v0", env=env)
    assert migrated.returncode == 0, migrated.stderr
    return tmp_path, env


QUEUE_MAIL = """
from django.core import mail
from django.core.mail import EmailMultiAlternatives
import mailer

mail.send_mail("Reset your password", "Use this link: https://x/reset/abc",
               None, ["ann@example.com"])
mailer.send_html_mail("Weekly news", "Plain news", "<p>HTML news</p>",
                      "news@example.com", ["bob@example.com"])
mailer.send_mail("To a missing user", "Body", "news@example.com",
                 ["gone@example.com"])
mailer.send_mail("To a busy server", "Body", "news@example.com",
                 ["busy@example.com"])
email = EmailMultiAlternatives(
    subject="Ünïcode and friends", body="Body ✓", from_email="news@example.com",
    to=["Dora <dora@bücher.example>"], cc=["cc@example.com"],
    bcc=["hidden@example.com"], reply_to=["reply@example.com"],
    headers={"X-Campaign": "autumn"})
email.attach_alternative("<b>Body ✓</b>", "text/html")
email.attach("notes.txt", "attached text", "text/plain")
email.send()
"""


def test_a_fresh_project_delivers_queued_mail_exactly_once(project, smtp_server):
    path, env = project
    smtp_server.reject(["gone@example.com"], code=550, reply="5.1.1 No such user")
    smtp_server.defer(["busy@example.com"], code=451, reply="4.3.0 Busy", times=1)

    queued = manage(path, "shell", "-c", QUEUE_MAIL, env=env)
    assert queued.returncode == 0, queued.stderr
    assert smtp_server.count == 0  # queued, not sent

    first = manage(path, "send_mail", env=env)

    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("sent 3, deferred 1, failed 1, suppressed 0 in ")
    received = {tuple(r.rcpt_tos): r.message for r in smtp_server.messages}
    assert set(received) == {
        ("ann@example.com",),
        ("bob@example.com",),
        ("dora@xn--bcher-kva.example", "cc@example.com", "hidden@example.com"),
    }
    reset = received[("ann@example.com",)]
    assert reset["Subject"] == "Reset your password"
    assert reset["From"] == "Site <site@example.com>"
    assert content(reset) == "Use this link: https://x/reset/abc"
    news = received[("bob@example.com",)]
    assert content(news.get_body(("html",))) == "<p>HTML news</p>"
    assert content(news.get_body(("plain",))) == "Plain news"
    rich = received[
        ("dora@xn--bcher-kva.example", "cc@example.com", "hidden@example.com")
    ]
    assert rich["Subject"] == "Ünïcode and friends"
    assert rich["Cc"] == "cc@example.com"
    assert rich["Reply-To"] == "reply@example.com"
    assert rich["X-Campaign"] == "autumn"
    assert (
        "Bcc" not in rich and b"hidden@example.com" not in smtp_server.messages[-1].data
    )
    assert content(rich.get_body(("plain",))) == "Body ✓"
    (attachment,) = list(rich.iter_attachments())
    assert attachment.get_filename() == "notes.txt"
    assert content(attachment) == "attached text"

    # The 550 is final: nothing is retried. The 451 goes out once it is due.
    retried = manage(path, "retry_deferred", env=env)
    assert retried.stdout == "1 deferred message(s) queued again\n"
    second = manage(path, "send_mail", env=env)
    assert second.stdout.startswith("sent 1, deferred 0, failed 0, suppressed 0 in ")
    third = manage(path, "send_mail", env=env)
    assert third.stdout.startswith("sent 0, deferred 0, failed 0, suppressed 0 in ")

    counts = smtp_server.counts
    assert counts["busy@example.com"] == 1
    assert counts["gone@example.com"] == 0
    assert max(counts.values()) == 1
    log = manage(
        path,
        "shell",
        "-v0",
        "-c",
        "from mailer.models import MessageLog as L; "
        "print(sorted((l.recipient, l.get_result_display(), l.smtp_code) "
        "for l in L.objects.all()))",
        env=env,
    )
    assert log.stdout.strip() == str(
        sorted(
            [
                ("ann@example.com", "sent", 250),
                ("bob@example.com", "sent", 250),
                ("busy@example.com", "deferred", 451),
                ("busy@example.com", "sent", 250),
                ("dora@xn--bcher-kva.example", "sent", 250),
                ("gone@example.com", "failed", 550),
            ]
        )
    )
