"""The editor's flow in a real browser: Debian's Chromium, headless, driven by
Playwright, against the example newsroom served by ``runserver`` on its own
SQLite file; then the cron commands run as separate processes and a real SMTP
server counts what arrives.

The example project runs in child processes with its own settings, so this
test never needs the example's settings in the pytest process; it reads the
example's database with plain ``sqlite3``.

CI installs Chromium (``apt-get install chromium``); without it this test
fails instead of skipping, so a broken CI image cannot pass unnoticed.
"""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
MANAGE = ROOT / "example_project" / "manage.py"
CHROMIUM = "/usr/bin/chromium"
# As root Chromium needs --no-sandbox; the rest keep it off the (closed)
# network. Playwright adds --headless itself.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SUBSCRIBERS = 50
# The demo command's issue: its lead story and one further down.
HEADLINES = [
    "Council approves night buses to campus",
    "Rowing club wins the Head of the River",
]
EDITOR = "editor@bugle.example"
SCREENSHOT = Path("/tmp/confirm.png")
UNSUBSCRIBE_LINK = r"/mail/unsubscribe/[A-Za-z0-9_\-:.]+/"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """``example_project/manage.py <args>`` in a child process (killed after
    three minutes); fails the test with its output if it fails."""
    done = subprocess.run(
        [sys.executable, str(MANAGE), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, f"manage.py {' '.join(args)}:\n{done.stderr}"
    return done


@dataclass
class Newsroom:
    url: str
    env: dict[str, str]
    db: Path

    def query(self, sql: str, *params: object) -> list[tuple]:
        # closing(): sqlite3's own context manager commits but never closes.
        with closing(sqlite3.connect(self.db, timeout=30)) as connection:
            return connection.execute(sql, params).fetchall()


def wait_for_port(port: int, process: subprocess.Popen, log: Path) -> None:
    """Bounded: 150 tries, 30 s at most."""
    deadline = time.monotonic() + 30
    for _ in range(150):
        if process.poll() is not None:
            pytest.fail(f"runserver exited:\n{log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
    pytest.fail(f"runserver did not listen within 30 s:\n{log.read_text()}")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture
def newsroom(tmp_path: Path, smtp_server) -> Iterator[Newsroom]:
    """The example project on a fresh SQLite file, seeded by its own ``demo
    --no-send`` (readers, an issue, the editor), served on a free port, and
    sending to this test's SMTP server."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    db = tmp_path / "newsroom.sqlite3"
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH", "DATABASE_URL")
    }
    env.update(
        DATABASE_URL=f"sqlite:///{db}",
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(smtp_server.port),
        MAILER_SITE_URL=url,
        PYTHONWARNINGS="error::DeprecationWarning",
    )
    manage(env, "demo", "--subscribers", str(SUBSCRIBERS), "--no-send")
    log = tmp_path / "runserver.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            [sys.executable, str(MANAGE), "runserver", f"127.0.0.1:{port}"]
            + ["--noreload", "--skip-checks"],
            env=env,
            cwd=ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, server, log)
        yield Newsroom(url, env, db)
    finally:
        stop(server)


@pytest.fixture
def page():
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser test needs Debian's Chromium "
            "(apt-get install chromium)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(20_000)
            yield page
        finally:
            browser.close()


def choose_send_email_update(page, newsroom: Newsroom) -> None:
    page.goto(f"{newsroom.url}/admin/newsroom/issue/")
    page.locator("input[name=_selected_action]").first.check()
    page.select_option("select[name=action]", "send_email_update")
    page.click("button[name=index]")
    page.wait_for_selector("body.mailer-send-email-update")


def test_editor_sends_an_email_update_and_every_reader_gets_exactly_one(
    newsroom: Newsroom, page, smtp_server
):
    (issue_date,) = newsroom.query("SELECT date FROM newsroom_issue")[0]
    day = date.fromisoformat(issue_date)
    expected_subject = f"The Daily Bugle — {day:%A} {day.day} {day:%B}: {HEADLINES[0]}"
    readers = dict(
        newsroom.query("SELECT email, name FROM newsroom_subscriber WHERE active")
    )
    assert len(readers) == SUBSCRIBERS

    # The editor logs in and picks the action on the issue.
    page.goto(f"{newsroom.url}/admin/login/")
    page.fill("#id_username", "editor")
    page.fill("#id_password", "editor")
    page.click("input[type=submit]")
    page.wait_for_selector("#user-tools")
    choose_send_email_update(page, newsroom)

    # The confirmation page, in the admin's own look.
    assert page.title().startswith("Send email update")
    assert "Send email update" in page.inner_text(".breadcrumbs")
    assert page.inner_text(".mailer-subject") == expected_subject
    assert page.inner_text(".mailer-count") == str(SUBSCRIBERS)
    assert f"for {SUBSCRIBERS} recipients" in page.inner_text("#mailer-summary")
    assert "The Daily Bugle <news@bugle.example>" in page.inner_text("#content")
    assert page.locator("iframe[title='HTML preview']").count() == 1
    preview = page.frame_locator("iframe[title='HTML preview']").locator("body")
    preview_text = preview.inner_text()
    assert all(headline in preview_text for headline in HEADLINES)
    assert "Good morning Ed Itor" in preview_text  # as the editor
    text_version = page.inner_text(".mailer-text")
    assert HEADLINES[0].upper() in text_version
    assert "Unsubscribe in one click" in text_version
    SCREENSHOT.unlink(missing_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert smtp_server.count == 0 and not newsroom.query(
        "SELECT id FROM mailer_messagejob"
    )

    # A test email to the editor first: queued, not sent inside the request.
    page.click("input[type=submit][name=send_test]")
    assert "A test email is queued for editor@bugle.example" in page.inner_text(
        ".messagelist"
    )
    assert page.inner_text(".mailer-count") == str(SUBSCRIBERS)

    # "Yes, I'm sure": one job, queued at once; nothing is sent in the request.
    started = time.monotonic()
    page.click("input[type=submit][value='Yes, I’m sure']")
    page.wait_for_selector(".messagelist")
    assert time.monotonic() - started < 10
    assert page.url == f"{newsroom.url}/admin/newsroom/issue/"
    assert f"Email update queued for {SUBSCRIBERS} recipients." in page.inner_text(
        ".messagelist"
    )
    assert smtp_server.count == 0
    assert newsroom.query("SELECT recipient_count FROM mailer_messagejob") == [
        (SUBSCRIBERS,)
    ]

    # A second click on the same issue is refused unless the editor insists.
    choose_send_email_update(page, newsroom)
    assert "This was emailed before" in page.inner_text(".mailer-warning")
    # The page loads an iframe and a stylesheet; a click before "load" can
    # be lost.
    page.wait_for_load_state("load")
    with page.expect_navigation():
        page.locator("input[type=submit][value='Yes, I’m sure']").dispatch_event(
            "click"
        )
    assert "Not queued" in page.inner_text(".messagelist")
    assert len(newsroom.query("SELECT id FROM mailer_messagejob")) == 1

    # Cron's turn, each command its own process.
    expanded = manage(newsroom.env, "process_mail_jobs")
    assert f"{SUBSCRIBERS} message(s) queued, 0 skipped" in expanded.stdout
    sent = manage(newsroom.env, "send_mail")
    assert sent.stdout.startswith(f"sent {SUBSCRIBERS + 1}, deferred 0, failed 0")

    # The editor's test, as the readers get it but for the "[TEST]" ...
    (test,) = [m for m in smtp_server.messages if m.rcpt_tos == [EDITOR]]
    # .strip(): Django 5.2 (email.policy.compat32) folds this long encoded
    # subject right after "Subject:", which unfolds to a leading space.
    assert test.message["Subject"].strip() == f"[TEST] {expected_subject}"
    assert "Good morning Ed Itor," in test.message.get_body(("plain",)).get_content()

    # ... and exactly one email per reader.
    received = [m for m in smtp_server.messages if m.rcpt_tos != [EDITOR]]
    recipients = Counter(address for m in received for address in m.rcpt_tos)
    assert len(received) == SUBSCRIBERS
    assert set(recipients) == set(readers)
    assert set(recipients.values()) == {1}

    links = set()
    for email in received:
        message = email.message
        (address,) = email.rcpt_tos
        assert message["Subject"] == expected_subject
        assert message["From"] == "The Daily Bugle <news@bugle.example>"
        (to,) = message["To"].addresses
        assert (to.display_name, to.addr_spec) == (readers[address], address)
        text = message.get_body(("plain",)).get_content()
        html = message.get_body(("html",)).get_content()
        for headline in HEADLINES:
            assert headline.upper() in text
            assert headline in html
        assert f"Good morning {readers[address]}," in text  # the reader's own name
        assert f"Read more: {newsroom.url}/#article-" in text
        link = re.search(re.escape(newsroom.url) + UNSUBSCRIBE_LINK, text).group(0)
        assert f'href="{link}"' in html
        assert message["List-Unsubscribe"] == f"<{link}>"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        links.add((address, link))
    assert len({link for _address, link in links}) == SUBSCRIBERS  # each their own

    # "View in your browser": the job's public archive page, no personal values.
    archive = re.search(r"View in your browser: (\S+)", text).group(1)
    page.goto(archive)
    assert HEADLINES[0] in page.frame_locator("iframe").locator("body").inner_text()
    assert (
        "Good morning reader,"
        in page.frame_locator("iframe").locator("body").inner_text()
    )

    # A reader follows "Read more" to the site ...
    address, link = sorted(links)[0]
    html = next(m for m in received if m.rcpt_tos == [address]).message
    read_more = re.search(
        r'href="([^"]+#article-\d+)"', html.get_body(("html",)).get_content()
    ).group(1)
    page.goto(read_more)
    assert HEADLINES[0] in page.inner_text("h3")

    # ... and unsubscribes in one click: GET asks, POST does it, and the
    # newsroom's signal receiver turns their subscription off.
    page.goto(link)
    assert address in page.inner_text("body")
    assert newsroom.query(
        "SELECT active FROM newsroom_subscriber WHERE email = ?", address
    ) == [(1,)]
    page.click("button[type=submit]")
    assert "You are unsubscribed" in page.inner_text("h1")
    assert newsroom.query(
        "SELECT active FROM newsroom_subscriber WHERE email = ?", address
    ) == [(0,)]
    assert newsroom.query(
        "SELECT reason FROM mailer_dontsendentry WHERE address = ?", address
    ) == [("unsubscribed",)]
