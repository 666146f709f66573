"""Fixtures shared by the suite: a real SMTP server on 127.0.0.1, settings
pointing the sending backend at it, the editor and the newsletter of the desk
tests, and worker processes running the real management commands against the
test database."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from mailer.testing.mailconfig import queue_then_smtp

if TYPE_CHECKING:
    from mailer.models import MessageJob

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def smtp_server() -> Iterator:
    from mailer.testing.smtp import SMTPTestServer

    with SMTPTestServer() as server:
        yield server


def point_mail_at(settings, port: int) -> None:
    """Queue through ``DbBackend`` and send to 127.0.0.1:port, as configured in
    tests/settings.py (5.2 or 6.1 style). Django's test environment swaps every
    email backend for locmem; this puts the real configuration back."""
    for name, value in queue_then_smtp("127.0.0.1", port, timeout=10).items():
        setattr(settings, name, value)


def by_recipient(messages: Iterable) -> dict:
    """The server's received messages keyed by envelope recipient, after
    checking that each recipient received exactly one: a dict built straight
    from the list would hide a duplicate delivery."""
    messages = list(messages)
    counts = Counter(rcpt for m in messages for rcpt in m.rcpt_tos)
    twice = {rcpt: n for rcpt, n in counts.items() if n != 1}
    assert not twice, f"received more than once: {twice}"
    return {rcpt: m for m in messages for rcpt in m.rcpt_tos}


@pytest.fixture
def mailserver(settings, smtp_server):
    """The SMTP server, with this process's sending backend pointed at it."""
    point_mail_at(settings, smtp_server.port)
    return smtp_server


@pytest.fixture
def editor(db):
    """A superuser, the editor of the admin tests (jobs/, system/)."""
    from django.contrib.auth.models import User

    return User.objects.create_superuser(
        "editor", "editor@example.com", "pw", first_name="Eddie", last_name="Tor"
    )


@pytest.fixture
def editor_client(client, editor):
    """Django's test client, logged in as ``editor``."""
    client.force_login(editor)
    return client


def newsletter(
    n: int = 3, *, subject: str = "Issue 7: [[mj:name]]", **kwargs
) -> MessageJob:
    """The confirmed job of the editor's desk tests (test_admin_desk.py,
    system/test_desk_browser.py): ``n`` readers, r0@example.com named
    "Reader 0" and so on, on the "daily" list, from The Daily. The text and
    the HTML greet each reader by name; the text carries the unsubscribe
    link. ``kwargs`` go to ``create_job`` (``created_by``, ``send_at``, ...)."""
    from mailer.jobs.services import RenderedEmail, create_job

    return create_job(
        content=RenderedEmail(
            subject=subject,
            body_text="Hello [[mj:name]]\nUnsubscribe: [[mj:unsubscribe_url]]",
            body_html="<p>Hello [[mj:name]]</p>",
        ),
        recipients=[
            {"email": f"r{i}@example.com", "name": f"Reader {i}"} for i in range(n)
        ],
        from_email="The Daily <news@example.com>",
        list_id="daily",
        **kwargs,
    )


@pytest.fixture
def use_tasks(settings) -> None:
    """``MAILER_USE_TASKS`` on: queued mail enqueues a task (tests/worker/,
    and the real ``db_worker`` in tests/system/)."""
    settings.MAILER_USE_TASKS = True


@pytest.fixture
def worker_env(smtp_server) -> dict[str, str]:
    """Environment for a ``manage.py`` subprocess that must see this test's
    database and send to this test's SMTP server. Use with ``transactional_db``
    so the subprocess sees committed rows."""
    from django.db import connection

    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "example_project")]),
        "MAILER_TEST_DB_NAME": str(connection.settings_dict["NAME"]),
        "MAILER_TEST_SMTP_PORT": str(smtp_server.port),
        "PYTHONWARNINGS": "error::DeprecationWarning",
    }


def start_command(env: dict[str, str], *args: str) -> subprocess.Popen:
    """Start ``django-admin <args>`` as a separate process."""
    return subprocess.Popen(
        [sys.executable, "-m", "django", *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


_started: list[subprocess.Popen] = []


def start(env: dict[str, str], *args: str) -> subprocess.Popen:
    """``start_command``, remembered so that ``reap_processes`` kills it if
    the test ends (fails) while it still runs: a ``--loop`` worker left
    behind would run forever."""
    process = start_command(env, *args)
    _started.append(process)
    return process


@pytest.fixture(autouse=True)
def reap_processes() -> Iterator[None]:
    """Kill the worker processes a test started with ``start`` and left
    running (a failed or timed-out test)."""
    yield
    while _started:
        process = _started.pop()
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


def run_command(
    env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess:
    """Run ``django-admin <args>`` in a separate process and wait (bounded)."""
    return subprocess.run(
        [sys.executable, "-m", "django", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


#: pytest-timeout's limit, seconds, for the tests whose work is large by
#: design (pyproject.toml's ``timeout`` is for the rest).
TIMEOUTS = {"slow": 900, "browser": 300}


def pytest_collection_modifyitems(items) -> None:
    """Slow and browser tests get a longer timeout, unless they set one."""
    for item in items:
        if item.get_closest_marker("timeout"):
            continue
        for marker, seconds in TIMEOUTS.items():
            if item.get_closest_marker(marker):
                item.add_marker(pytest.mark.timeout(seconds))
                break


def pytest_sessionfinish(session, exitstatus) -> None:
    """pytest-django removes the SQLite test database but not its WAL files."""
    from django.conf import settings

    name = str(settings.DATABASES["default"].get("TEST", {}).get("NAME") or "")
    if name.endswith(".sqlite3"):
        for suffix in ("-wal", "-shm"):
            Path(name + suffix).unlink(missing_ok=True)
