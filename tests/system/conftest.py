"""Fixtures of the scenario tests: the example newsroom in child processes
and a headless Chromium (the browser tests), shared by test_browser.py and
test_browser_subscriptions.py."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT

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


def press_yes_im_sure(page) -> None:
    """Press a confirmation page's "Yes, I'm sure" and wait for the next page.

    The page loads an iframe (the HTML preview) and a stylesheet; a click
    before the "load" event can be lost, so this waits for it first and then
    dispatches the click to the button itself."""
    page.wait_for_load_state("load")
    with page.expect_navigation():
        page.locator("input[type=submit][value='Yes, I’m sure']").dispatch_event(
            "click"
        )
