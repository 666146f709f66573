"""The example newsroom, run as its users run it: ``example_project/manage.py``
in child processes, each test on its own SQLite file. (The suite's settings
are not the example's, so nothing here imports the newsroom app.)"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import textwrap
from contextlib import closing
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.conftest import by_recipient

# The example's own project on its own SQLite file: the suite's database
# does not matter, so the PostgreSQL envs skip it.
pytestmark = pytest.mark.own_database

ROOT = Path(__file__).resolve().parent.parent.parent
MANAGE = ROOT / "example_project" / "manage.py"
#: example_project/newsroom_site/settings.py's TIME_ZONE.
EXAMPLE_TIME_ZONE = "Europe/London"


@pytest.fixture
def example_env(tmp_path: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH", "DATABASE_URL")
    }
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'newsroom.sqlite3'}",
        # Nothing listens here: a test that sends by mistake fails loudly.
        SMTP_PORT="1",
        PYTHONWARNINGS="error::DeprecationWarning",
    )
    return env


def manage(
    env: dict[str, str], *args: str, python: tuple[str, ...] = (), check: bool = True
) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, *python, str(MANAGE), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check:
        assert done.returncode == 0, f"{args}:\n{done.stdout}\n{done.stderr}"
    return done


def shell(env: dict[str, str], code: str) -> dict:
    """Run ``code`` in ``manage.py shell``; it prints one JSON line last."""
    done = manage(env, "shell", "-v", "0", "-c", textwrap.dedent(code))
    return json.loads(done.stdout.strip().splitlines()[-1])


def query(env: dict[str, str], sql: str) -> list[tuple]:
    path = env["DATABASE_URL"].removeprefix("sqlite:///")
    # closing(): sqlite3's own context manager commits but never closes.
    with closing(sqlite3.connect(path)) as connection:
        return connection.execute(sql).fetchall()


def summary(output: str) -> dict[str, str]:
    """The demo's "Name: value" report lines."""
    return dict(re.findall(r"^([A-Z][a-z ]+):\s+(\S.*)$", output, re.MULTILINE))


def test_demo_gives_every_reader_exactly_one_email_and_runs_again(example_env):
    first = manage(example_env, "demo", "--subscribers", "30")
    # The newsroom's today, in its TIME_ZONE (this process runs in the test
    # settings' zone, a day behind London for a few hours each night).
    today = datetime.now(ZoneInfo(EXAMPLE_TIME_ZONE)).date()
    report = summary(first.stdout)
    assert re.fullmatch(r"[\d,]+ emails/s", report.pop("Send rate"))
    assert report == {
        "Newsroom": (
            "30 readers get the email edition; new issue #1 “Issue of "
            f"{today:%A} {today.day} {today:%B %Y}”; "
            "admin login: editor / editor"
        ),
        "Admin": "Email update queued for 30 recipients. See its report. (job #1)",
        "Recipients queued": "30",
        "Skipped at expansion": "0",
        "Marked sent": "30",
        "Not sent": "0",
        "Emails received": "30",
        "Distinct recipients": "30",
        "Duplicates": "0",
        "Readers without email": "0",
        "Seconds per phase": report["Seconds per phase"],
    }
    assert re.fullmatch(
        r"seed [\d.]+, confirmation page [\d.]+, confirm \(queue job\) [\d.]+, "
        r"process_mail_jobs [\d.]+, send_mail [\d.]+",
        report["Seconds per phase"],
    )
    assert first.stdout.rstrip().endswith(
        "Every one of the 30 readers got exactly one email."
    )

    # Again, with fewer readers: a new issue (no resend guard in the way),
    # the existing readers reused, the surplus ones switched off.
    second = manage(example_env, "demo", "--subscribers", "20")
    assert summary(second.stdout)["Emails received"] == "20"
    assert "Every one of the 20 readers got exactly one email." in second.stdout
    assert query(
        example_env, "SELECT count(*), sum(active) FROM newsroom_subscriber"
    ) == [(30, 20)]
    assert query(example_env, "SELECT count(*) FROM newsroom_issue") == [(2,)]
    assert query(example_env, "SELECT username FROM auth_user") == [("editor",)]


def test_the_issue_email_has_no_empty_newsletters_line(example_env, smtp_server):
    """The email edition's readers are on no mailing list, so they have no
    preferences link: the issue's "Your newsletters" line is an
    ``{% ifrecipient preferences_url %}`` segment, left out for them (list
    readers keep it: tests/system/test_browser_subscriptions.py)."""
    manage(
        example_env,
        "demo",
        "--subscribers",
        "2",
        "--smtp",
        f"127.0.0.1:{smtp_server.port}",
    )
    received = by_recipient(smtp_server.messages)
    assert len(received) == 2
    for address, delivered in received.items():
        message = delivered.message
        text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
        html = message.get_body(("html",)).get_content()
        footer = text.split("------------------------------------------\n")[1]
        assert re.fullmatch(
            rf"You get this because {re.escape(address)} subscribed to the email "
            r"edition\.\nUnsubscribe in one click: http\S+/mail/unsubscribe/\S+/\n"
            r"View in your browser: http\S+/mail/view/\S+/\n\n",
            footer,
        ), footer
        assert "Your newsletters" not in html
        assert re.search(r'href="http\S+/mail/view/\S+/"', html)
        assert "mj" not in text and "mj" not in html


def test_demo_fails_when_mail_does_not_arrive(example_env):
    """Nothing listens on port 1: the run must not claim success."""
    done = manage(
        example_env, "demo", "--subscribers", "3", "--smtp", "127.0.0.1:1", check=False
    )
    assert done.returncode != 0
    assert summary(done.stdout)["Not sent"] == "3 queued"
    assert summary(done.stdout)["Readers without email"] == "3"
    failed_run, verdict = done.stderr.splitlines()
    # A refused connection is relay trouble: every worker pauses, and says so.
    assert failed_run.startswith(
        "send_mail: cannot connect to 127.0.0.1:1: [Errno 111] Connection refused;"
        " relay paused for "
    )
    assert (
        verdict == "CommandError: Not every one of the 3 readers got exactly one email"
    )


def test_readers_are_subscribers_and_opted_in_users_once_each_fast(example_env):
    manage(example_env, "migrate", "-v", "0")
    result = shell(
        example_env,
        """
        import json, time
        from django.contrib.auth import get_user_model
        from django.db import connection, transaction
        from django.utils import timezone
        from newsroom.models import Profile, Subscriber
        from newsroom.recipients import email_edition_readers

        # Raw inserts: bulk_create would take several times longer to set up.
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO newsroom_subscriber (email, name, active, created_at)"
                " VALUES (%s, %s, %s, %s)",
                [(f"s{i}@example.com", f"S {i}", True, timezone.now())
                 for i in range(100_000)],
            )
        Subscriber.objects.create(email="S8@EXAMPLE.COM", name="Shouting")
        Subscriber.objects.create(email="gone@example.com", active=False)

        def user(name, email, subscribed, active=True):
            account = get_user_model().objects.create_user(
                name, email, first_name=name.title(), last_name="Reader",
                is_active=active,
            )
            Profile.objects.create(user=account, subscribed=subscribed)

        user("ada", "ada@example.com", True)
        user("sam", "S7@Example.com", True)  # also a subscriber
        user("quiet", "quiet@example.com", False)
        user("left", "left@example.com", True, active=False)
        user("anon", "", True)

        timings = []
        for _ in range(3):
            started = time.perf_counter()
            readers = email_edition_readers(None)
            timings.append(time.perf_counter() - started)
        emails = [r["email"].lower() for r in readers]
        print(json.dumps({
            "count": len(readers),
            "distinct": len(set(emails)),
            "seconds": min(timings),
            "first": readers[0],
            "last": readers[-1],
            "s7": [r for r in readers if r["email"].lower() == "s7@example.com"],
            "s8": [r for r in readers if r["email"].lower() == "s8@example.com"],
            "absent": sorted({"gone@example.com", "quiet@example.com",
                              "left@example.com", ""} & set(emails)),
        }))
        """,
    )
    assert result["count"] == result["distinct"] == 100_001
    assert result["first"] == {"email": "s0@example.com", "name": "S 0"}
    assert result["last"] == {"email": "ada@example.com", "name": "Ada Reader"}
    assert result["s7"] == [{"email": "s7@example.com", "name": "S 7"}]
    assert result["s8"] == [{"email": "s8@example.com", "name": "S 8"}]
    assert result["absent"] == []
    assert result["seconds"] < 1.0, result["seconds"]


def test_one_click_unsubscribe_stops_the_subscription_and_the_profile(example_env):
    manage(example_env, "migrate", "-v", "0")
    result = shell(
        example_env,
        """
        import json
        from django.contrib.auth import get_user_model
        from django.test import Client
        from mailer.unsubscribe.tokens import make_token
        from newsroom.models import Profile, Subscriber

        Subscriber.objects.create(email="Reader@Example.com", name="Reader")
        account = get_user_model().objects.create_user("ada", "ADA@example.com")
        Profile.objects.create(user=account, subscribed=True)
        client = Client()
        states = []
        for address in ["reader@example.com", "ada@example.com"]:
            url = f"/mail/unsubscribe/{make_token(address)}/"
            for method in (client.get, client.post):  # GET only asks
                assert method(url).status_code == 200
                states.append([
                    Subscriber.objects.get().active,
                    Profile.objects.get().subscribed,
                ])
        print(json.dumps(states))
        """,
    )
    assert result == [[True, True], [False, True], [False, True], [False, False]]


def test_newsroom_migrations_match_the_models(example_env):
    # Every app's, chroniker's included (see newsroom_site/apps.py).
    done = manage(example_env, "makemigrations", "--check", "--dry-run")
    assert done.stdout == "No changes detected\n"


def test_chroniker_runs_the_two_mail_commands_every_minute(example_env):
    manage(example_env, "migrate", "-v", "0")
    assert query(
        example_env,
        "SELECT command, args, frequency, params, enabled FROM chroniker_job "
        "ORDER BY command",
    ) == [
        # Not retry_deferred (migration 0004): it would cut every deferred
        # message's backoff short, every minute.
        ("process_mail_jobs", "--max-seconds 50", "MINUTELY", "interval:1", 1),
        ("send_mail", "--max-seconds 55", "MINUTELY", "interval:1", 1),
    ]
    # What chroniker's Job.handle_run() does with them (without its
    # heartbeat thread, which takes five seconds to stop): the args must
    # reach the commands parsed.
    ran = shell(
        example_env,
        """
        import io, json
        from chroniker.models import Job
        from django.core.management import call_command
        ran = {}
        for job in Job.objects.order_by("command"):
            args, options = job.get_args()
            output = io.StringIO()
            call_command(job.command, *args, stdout=output, **options)
            ran[job.command] = output.getvalue().strip()
        print(json.dumps(ran))
        """,
    )
    timeless = {
        command: re.sub(r" in [\d.]+s \([\d.]+/s\)", "", output)
        for command, output in ran.items()
    }
    assert timeless == {
        "process_mail_jobs": "expanded 0 job(s): 0 message(s) queued, 0 skipped; "
        "0 job(s) done",
        "send_mail": "sent 0, deferred 0, failed 0, suppressed 0; stopped: queue empty",
    }


def test_the_example_works_without_chroniker(example_env):
    """chroniker is an optional extra: hide it and migrate from scratch."""
    without = (
        "-c",
        "import runpy, sys; sys.modules['chroniker'] = None; "
        "sys.argv = sys.argv[1:]; "
        "runpy.run_path(sys.argv[0], run_name='__main__')",
    )
    manage(example_env, "migrate", "-v", "0", python=without)
    manage(example_env, "check", "--fail-level", "WARNING", python=without)
    assert query(
        example_env,
        "SELECT name FROM django_migrations WHERE app = 'newsroom' ORDER BY name",
    ) == [
        ("0001_initial",),
        ("0002_mail_jobs_every_minute",),
        ("0003_mailing_lists",),
        ("0004_no_minutely_retry_deferred",),
    ]
    assert not query(
        example_env,
        "SELECT name FROM sqlite_master WHERE name LIKE 'chroniker%'",
    )


#: Runs manage.py as if aiosmtpd (the [testing] extra) were not installed.
WITHOUT_AIOSMTPD = (
    "-c",
    "import runpy, sys; from tests.without import Refuse; "
    "sys.meta_path.insert(0, Refuse({'aiosmtpd'})); "
    "sys.argv = sys.argv[1:]; "
    "runpy.run_path(sys.argv[0], run_name='__main__')",
)


def test_without_the_testing_extra_demo_and_smtp_sink_say_so_and_change_nothing(
    example_env,
):
    manage(example_env, "migrate", "-v", "0")
    issues = query(example_env, "SELECT count(*) FROM newsroom_issue")

    for command in (("demo", "--subscribers", "3"), ("smtp_sink",)):
        done = manage(example_env, *command, python=WITHOUT_AIOSMTPD, check=False)
        assert done.returncode == 1, done.stderr
        assert 'pip install "django-mailer-jobs[testing]"' in done.stderr
        assert "Traceback" not in done.stderr
    # The demo stopped before seeding: no new issue, no reader.
    assert query(example_env, "SELECT count(*) FROM newsroom_issue") == issues
    assert query(example_env, "SELECT count(*) FROM newsroom_subscriber") == [(0,)]


EDITOR_SENDS_A_TEST = """
    import json
    from django.test import Client, override_settings
    from django.contrib.auth import get_user_model
    from newsroom.models import Issue
    client = Client()
    client.force_login(get_user_model().objects.get(username="editor"))
    issue = Issue.objects.order_by("-pk").first()
    with override_settings(ALLOWED_HOSTS=["testserver"]):
        page = client.post(
            "/admin/newsroom/issue/",
            {"action": "send_email_update", "_selected_action": [issue.pk],
             "send_test": "1"},
        )
    print(json.dumps({"status": page.status_code}))
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "worker",
    [
        ("db_worker", "--interval", "0.2", "--no-startup-delay", "--no-reload"),
        ("runmailer", "--idle-seconds", "600"),
    ],
    ids=["tasks", "runmailer"],
)
def test_the_editors_test_email_arrives_within_seconds(
    worker, example_env, smtp_server
):
    """No cron: the tasks worker (django-tasks-db) or ``runmailer`` picks the
    editor's "send a test to me" up as it is queued."""
    pytest.importorskip("django_tasks_db")
    import signal

    env = {**example_env, "SMTP_PORT": str(smtp_server.port)}
    manage(env, "demo", "--subscribers", "3", "--no-send")
    process = subprocess.Popen(
        [sys.executable, str(MANAGE), *worker],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert shell(env, EDITOR_SENDS_A_TEST) == {"status": 200}
        # Bounded, far below runmailer's idle sleep and cron's minute.
        assert smtp_server.wait_for(1, timeout=30)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=30)
        finally:
            process.kill()
            process.wait()
    (received,) = smtp_server.messages
    assert received.rcpt_tos == ["editor@bugle.example"]
    assert received.message["Subject"].strip().startswith("[TEST] ")
    # No empty link: the test has no archive page yet (no job) and the
    # editor no preferences link, so those lines are left out, not blank.
    text = received.message.get_body(("plain",)).get_content()
    html = received.message.get_body(("html",)).get_content()
    assert "View in your browser" not in text and "Your newsletters" not in text
    assert 'href=""' not in html
    assert re.search(r"Unsubscribe in one click: http\S+", text)


def test_smtp_sink_prints_one_line_per_email_and_stops_on_ctrl_c(example_env):
    import signal
    import smtplib
    import socket
    import time

    # A free port: bound here, released, then taken by the sink.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, str(MANAGE), "smtp_sink", "--port", str(port)],
        env=example_env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        client = None
        for _ in range(300):  # up to 30 s for Django and aiosmtpd to start
            try:
                client = smtplib.SMTP("127.0.0.1", port, timeout=5)
                break
            except ConnectionRefusedError:
                assert process.poll() is None, process.communicate(timeout=10)
                time.sleep(0.1)
        assert client is not None
        with client:
            client.sendmail(
                "news@bugle.example",
                ["amara@bugle.example", "ben@bugle.example"],
                b"Subject: Today's issue\r\n\r\nNews.\r\n",
            )
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
        process.wait()

    assert process.returncode == 0, stderr
    assert stdout == (
        f"SMTP sink on 127.0.0.1:{port} (Ctrl-C stops it)\n"
        "news@bugle.example -> amara@bugle.example, ben@bugle.example: "
        "Today's issue\n"
    )
