"""The editor's flow in a real browser: Debian's Chromium, headless, driven by
Playwright, against the example newsroom served by ``runserver``; then the
cron commands run as separate processes and a real SMTP server counts what
arrives."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
MANAGE = ROOT / "example_project" / "manage.py"
CHROMIUM = "/usr/bin/chromium"
# As root Chromium needs --no-sandbox; the rest keep it off the (closed) network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SUBSCRIBERS = 40
HEADLINES = [
    "Council approves night buses to campus",
    "Rowing club wins the Head of the River",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, str(MANAGE), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture
def newsroom(tmp_path: Path, smtp_server) -> Iterator[tuple[str, dict[str, str]]]:
    """The example project on a fresh SQLite file, served on a free port."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH", "DATABASE_URL")
    }
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'newsroom.sqlite3'}",
        SMTP_PORT=str(smtp_server.port),
        MAILER_SITE_URL=url,
    )
    manage(env, "demo", "--subscribers", str(SUBSCRIBERS), "--no-send")
    server = subprocess.Popen(
        [sys.executable, str(MANAGE), "runserver", f"127.0.0.1:{port}", "--noreload"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("runserver did not start within 30 s")
        yield url, env
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


@pytest.fixture
def browser_page():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            # Tall enough that the confirm button needs no scrolling: after a
            # scroll, headless Chromium can route a click to the (sandboxed,
            # out-of-process) preview iframe instead of the button.
            page = browser.new_page(viewport={"width": 1280, "height": 2000})
            page.set_default_timeout(20_000)
            yield page
        finally:
            browser.close()


def test_editor_sends_an_email_update_and_every_reader_gets_one(
    newsroom, browser_page, smtp_server, tmp_path
):
    url, env = newsroom
    page = browser_page

    page.goto(f"{url}/admin/login/")
    page.fill("#id_username", "editor")
    page.fill("#id_password", "editor")
    page.click("input[type=submit]")
    page.goto(f"{url}/admin/newsroom/issue/")
    page.locator("input[name=_selected_action]").first.check()
    page.select_option("select[name=action]", "send_email_update")
    with page.expect_navigation(wait_until="domcontentloaded"):
        page.click("button[name=index]")

    # The confirmation page: subject, sender, count, previews.
    page.wait_for_selector(".mailer-send-email-update")
    subject = page.inner_text(".mailer-subject")
    assert subject.startswith("The Daily Bugle — ")
    assert HEADLINES[0] in subject
    assert page.inner_text(".mailer-count") == str(SUBSCRIBERS)
    assert "The Daily Bugle <news@bugle.example>" in page.inner_text("#content")
    preview = page.frame_locator("iframe[title='HTML preview']")
    assert HEADLINES[1] in preview.locator("body").inner_text()
    assert "Good morning Ed" in page.inner_text(".mailer-text")
    page.screenshot(path=str(tmp_path / "confirm.png"), full_page=True)

    page.wait_for_load_state("load")  # the preview iframe included
    started = time.monotonic()
    with page.expect_navigation(wait_until="domcontentloaded"):
        page.click("input[type=submit][value='Yes, I’m sure']")
    assert time.monotonic() - started < 10
    assert f"Email update queued for {SUBSCRIBERS} recipients." in page.inner_text(
        ".messagelist"
    )
    assert smtp_server.count == 0  # nothing is sent inside the request

    manage(env, "process_mail_jobs")
    sent = manage(env, "send_mail")
    assert sent.stdout.startswith(f"sent {SUBSCRIBERS}, deferred 0, failed 0")

    received = smtp_server.messages
    recipients = [m.rcpt_tos[0] for m in received]
    assert len(received) == SUBSCRIBERS
    assert len(set(recipients)) == SUBSCRIBERS
    assert all(r.startswith("reader") for r in recipients)
    links = set()
    for email in received:
        message = email.message
        text = message.get_body(("plain",)).get_content()
        html = message.get_body(("html",)).get_content()
        for headline in HEADLINES:
            assert headline.upper() in text
            assert headline in html
        link = re.search(rf"{re.escape(url)}/mail/unsubscribe/[^/\s\"]+/", text).group(
            0
        )
        assert link in html
        assert f"<{link}>" in str(message["List-Unsubscribe"])
        links.add(link)
    assert len(links) == SUBSCRIBERS  # each reader's own link

    # One reader unsubscribes from the page the link opens.
    page.goto(next(iter(links)))
    page.click("button[type=submit]")
    assert "You are unsubscribed" in page.inner_text("h1")
