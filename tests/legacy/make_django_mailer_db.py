# ruff: noqa: E501 - the scripts run in the django-mailer virtualenv keep their long lines
"""Regenerate the committed django-mailer 2.3.2 database (tests/legacy/...).

The switch tests migrate a database made by the REAL django-mailer 2.3.2 to
ours. Making one needs django-mailer itself, whose import name (``mailer``)
is ours too, so this script builds it in a separate virtualenv and never
imports either package into this interpreter::

    python tests/postgres.py -- python tests/legacy/make_django_mailer_db.py

(tests/postgres.py provides ``DATABASE_URL`` for the PostgreSQL schema SQL;
without it only the SQLite schema is regenerated.) It writes, next to itself:

- ``django_mailer_2_3_2.json``: every row of django-mailer's three tables and
  its ``django_migrations`` rows, as django-mailer's own API left them: queued
  mail of each priority, HTML with an attachment, mail queued through its
  ``DbBackend``, a message held with priority "deferred", one deferred after a
  refused delivery (with its failure log), sent mail (with success logs), a
  don't-send entry;
- ``schema_sqlite.sql`` / ``schema_postgresql.sql``: django-mailer's tables as
  its migrations 0001-0007 left them (SQLite's ``sqlite_master``, PostgreSQL's
  ``pg_dump --schema-only``), so a test builds its exact schema on either
  database without network.

It needs network access to PyPI (or a mirror) once; the tests never do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import venv
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

HERE = Path(__file__).resolve().parent
REQUIREMENTS = ["django-mailer==2.3.2", "Django>=5.2,<5.3", "psycopg[binary]"]

# Runs inside the django-mailer virtualenv: django-mailer's migrations and its
# public API only, with a fixed clock-free content so reruns differ only in
# timestamps and Message-IDs.
POPULATE = r'''
import json, smtplib, sys
import django
from django.conf import settings

settings.configure(
    INSTALLED_APPS=["mailer"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": sys.argv[1]}},
    USE_TZ=True,
    EMAIL_BACKEND="mailer.backend.DbBackend",
    MAILER_EMAIL_BACKEND="__main__.RefusingLocmem",
    MAILER_USE_FILE_LOCK=False,
    DEFAULT_FROM_EMAIL="site@example.com",
    DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
)
django.setup()

from django.core.mail import EmailMultiAlternatives
from django.core.mail import send_mail as django_send_mail
from django.core.mail.backends.locmem import EmailBackend
from django.core.management import call_command


class RefusingLocmem(EmailBackend):
    """Refuses every recipient at refused.example.com, like a relay's 550."""

    def send_messages(self, messages):
        for message in messages:
            if any(r.endswith("@refused.example.com") for r in message.recipients()):
                raise smtplib.SMTPRecipientsRefused(
                    {message.to[0]: (550, b"5.1.1 no such user")}
                )
        return super().send_messages(messages)


sys.modules["__main__"].RefusingLocmem = RefusingLocmem
call_command("migrate", verbosity=0)

import mailer
from mailer.sending import engine
from mailer.models import (
    PRIORITY_DEFERRED, PRIORITY_HIGH, PRIORITY_LOW, PRIORITY_MEDIUM,
    DontSendEntry, Message, make_message,
)
from django.utils import timezone

# First wave: sent (success logs) and refused (deferred + failure log).
mailer.send_mail("Sent earlier", "This one went out.", "a@example.com", ["sent@example.com"])
mailer.send_mail("Refused", "The relay refuses this one.", "a@example.com",
                 ["bob@refused.example.com"], priority=PRIORITY_HIGH)
engine.send_all()
assert Message.objects.deferred().count() == 1
Message.objects.retry_deferred()
engine.send_all()  # refused again: retry_count 1, still deferred

# The queue the site has when it switches.
mailer.send_mail("High one", "Password reset: https://example.com/r/1/",
                 "site@example.com", ["high@example.com"], priority=PRIORITY_HIGH)
mailer.send_mail("Medium one", "Plain medium.\nSecond line, é ü.", "site@example.com",
                 ["medium@example.com", "Carol <carol@example.com>"])
mailer.send_mail("Low one", "Low priority.", "site@example.com", ["low@example.com"],
                 priority=PRIORITY_LOW)
mailer.send_mail("Held one", "Queued deferred: waits for retry_deferred.",
                 "site@example.com", ["held@example.com"], priority=PRIORITY_DEFERRED)
mailer.send_html_mail("HTML one", "Text part", "<p>HTML <b>part</b></p>",
                      "News <news@example.com>", ["html@example.com"],
                      headers={"X-Campaign": "switch"})
email = EmailMultiAlternatives("Attachment one", "See the file.", "site@example.com",
                               ["attach@example.com"], cc=["cc@example.com"],
                               bcc=["bcc@example.com"], reply_to=["reply@example.com"])
email.attach("report.csv", "a,b\n1,2\n", "text/csv")
email.attach("blob.bin", bytes(range(256)), "application/octet-stream")
message = make_message(priority=PRIORITY_MEDIUM)
message.email = email
message.save()
# Django's own send_mail through django-mailer's DbBackend (a password reset
# would go this way): the pickled email carries the backend as "connection".
django_send_mail("Through the backend", "Queued by EMAIL_BACKEND.",
                 "site@example.com", ["backend@example.com"])
DontSendEntry.objects.create(to_address="Blocked@Example.com", when_added=timezone.now())

from django.db import connection
data = {}
with connection.cursor() as cursor:
    for table in ["mailer_message", "mailer_dontsendentry", "mailer_messagelog"]:
        cursor.execute(f"SELECT * FROM {table} ORDER BY id")
        columns = [c[0] for c in cursor.description]
        data[table] = {"columns": columns, "rows": [list(r) for r in cursor.fetchall()]}
    cursor.execute("SELECT app, name, applied FROM django_migrations WHERE app = 'mailer' ORDER BY id")
    data["django_migrations"] = {"columns": ["app", "name", "applied"],
                                 "rows": [list(r) for r in cursor.fetchall()]}
    cursor.execute("SELECT sql FROM sqlite_master WHERE tbl_name LIKE 'mailer_%' AND sql IS NOT NULL ORDER BY rowid")
    schema = [r[0] + ";" for r in cursor.fetchall()]
print(json.dumps({"data": data, "sqlite_schema": schema}, indent=1, default=str))
'''

MIGRATE = r"""
import sys
import django
from django.conf import settings
from urllib.parse import urlsplit

parts = urlsplit(sys.argv[1])
database = {"ENGINE": "django.db.backends.postgresql", "NAME": parts.path[1:],
            "USER": parts.username or "", "HOST": parts.hostname, "PORT": parts.port}
settings.configure(INSTALLED_APPS=["mailer"], DATABASES={"default": database},
                   DEFAULT_AUTO_FIELD="django.db.models.BigAutoField")
django.setup()
from django.core.management import call_command
call_command("migrate", "mailer", verbosity=0)
"""


def make_venv(path: Path) -> Path:
    venv.create(path, with_pip=True)
    python = path / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", *REQUIREMENTS], check=True
    )
    return python


def postgres_schema(python: Path, env: dict[str, str], url: str) -> str:
    """django-mailer's tables as its migrations leave them on PostgreSQL
    (``pg_dump --schema-only`` of a database it migrated), without the session
    settings pg_dump adds (an empty ``search_path`` among them)."""
    import psycopg

    sys.path.insert(0, str(HERE.parent))
    from postgres import find_bindir

    name = "django_mailer_schema"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(url)
    target = urlunsplit(parts._replace(path=f"/{name}"))
    # In a directory of its own: the worktree's ``mailer`` must not shadow
    # django-mailer's.
    subprocess.run(
        [str(python), "-c", MIGRATE, target], check=True, env=env, cwd=python.parent
    )
    dump = subprocess.run(
        [
            str(find_bindir() / "pg_dump"),
            "--schema-only",
            "--no-owner",
            "--no-privileges",
            "--table=public.mailer_*",
            f"--host={parts.hostname}",
            f"--port={parts.port}",
            f"--username={parts.username}",
            name,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    statements = []
    for statement in dump.split(";\n"):
        lines = [ln for ln in statement.splitlines() if not ln.startswith(("--", "\\"))]
        text = "\n".join(lines).strip()
        if text and not text.startswith(("SET ", "SELECT pg_catalog.set_config")):
            statements.append(text + ";")
    return "\n".join(statements) + "\n"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        python = make_venv(Path(tmp) / "venv")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        db = Path(tmp) / "django_mailer.sqlite3"
        out = subprocess.run(
            [str(python), "-c", POPULATE, str(db)],
            check=True,
            capture_output=True,
            text=True,
            cwd=tmp,
            env=env,
        ).stdout
        made = json.loads(out)
        (HERE / "django_mailer_2_3_2.json").write_text(
            json.dumps(made["data"], indent=1) + "\n"
        )
        (HERE / "schema_sqlite.sql").write_text("\n".join(made["sqlite_schema"]) + "\n")
        url = os.environ.get("DATABASE_URL", "")
        if url.startswith("postgres"):
            (HERE / "schema_postgresql.sql").write_text(
                postgres_schema(python, env, url)
            )
    print(f"wrote {HERE}", file=sys.stderr)


if __name__ == "__main__":
    main()
