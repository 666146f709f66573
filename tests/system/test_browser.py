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

import re
from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from tests.system.conftest import SUBSCRIBERS, Newsroom, manage, press_yes_im_sure

pytestmark = [pytest.mark.browser, pytest.mark.own_database]

# The demo command's issue: its lead story and one further down.
HEADLINES = [
    "Council approves night buses to campus",
    "Rowing club wins the Head of the River",
]
EDITOR = "editor@bugle.example"
SCREENSHOT = Path("/tmp/confirm.png")
UNSUBSCRIBE_LINK = r"/mail/unsubscribe/[A-Za-z0-9_\-:.]+/"


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
    # A link in the preview opens in a new tab: the editor keeps the page
    # (inside the frame the site would refuse to load, X-Frame-Options).
    link = page.frame_locator("iframe[title='HTML preview']").locator(
        "a[href*='#article-']"
    )
    href = link.first.get_attribute("href")
    with page.context.expect_page() as opened:
        link.first.click()
    assert opened.value.url.endswith(href.split("/", 3)[-1]), opened.value.url
    opened.value.close()
    assert page.title().startswith("Send email update")
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

    # "Yes, I'm sure": one job, queued at once; nothing is sent, and not one
    # reader's message made, in the request (the expansion is cron's work).
    press_yes_im_sure(page)
    page.wait_for_selector(".messagelist")
    assert newsroom.query(
        "SELECT count(*) FROM mailer_message WHERE job_id IS NOT NULL"
    ) == [(0,)]
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
    press_yes_im_sure(page)
    assert "Nothing was queued." in page.inner_text(".messagelist")
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

    # Its links open in the page, not in the frame, which the site refuses
    # to fill (X-Frame-Options: DENY).
    with page.expect_navigation():
        page.frame_locator("iframe").locator("a[href*='#article-']").first.click()
    assert "#article-" in page.url
    assert HEADLINES[0] in page.inner_text("h3")

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
