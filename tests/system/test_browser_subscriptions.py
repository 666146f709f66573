"""A reader in a real browser (Debian's Chromium via Playwright) against the
example newsroom: signup on the front page -> the confirmation link from the
email the SMTP server received -> confirmed -> the editor sends to lists ->
the reader leaves one list and still gets the other.

Reuses the newsroom and browser fixtures of tests/system/conftest.py (the
example project in child processes, its own SQLite file)."""

from __future__ import annotations

import re

import pytest

from tests.system.conftest import manage, press_yes_im_sure

pytestmark = [pytest.mark.browser, pytest.mark.own_database]

READER = "zoe@reader.example"


def only_link(smtp_server, kind: str, url: str, subject_part: str = "") -> str:
    """The ``/newsletters/<kind>/`` link in the newest email to the reader."""
    mine = [m for m in smtp_server.messages if m.rcpt_tos == [READER]]
    body = mine[-1].message.get_body(("plain",)).get_content()
    found = re.search(re.escape(url) + rf"/newsletters/{kind}/[^\s/]+/", body)
    assert found, body
    return found.group(0)


def newsletters_to_reader(smtp_server) -> list:
    return [
        m
        for m in smtp_server.messages
        if m.rcpt_tos == [READER] and "Daily Bugle" in m.message["Subject"]
    ]


def send_issue_to_lists(page, newsroom, lists: list[str], resend: bool) -> None:
    page.goto(f"{newsroom.url}/admin/newsroom/issue/")
    page.locator("input[name=_selected_action]").first.check()
    page.select_option("select[name=action]", "send_email_update")
    page.click("button[name=index]")
    page.wait_for_selector("body.mailer-send-email-update")
    for name in lists:
        page.get_by_label(name).check()
    if resend:
        page.check("input[name=confirm_resend]")
    press_yes_im_sure(page)
    assert "Email update queued for 1 recipient." in page.inner_text(".messagelist")
    manage(newsroom.env, "process_mail_jobs")
    manage(newsroom.env, "send_mail")


def test_signup_confirm_newsletter_and_leaving_one_list_keeps_the_other(
    newsroom,
    page,
    smtp_server,
):
    # The subscribe box on the front page, without JavaScript.
    page.goto(newsroom.url)
    page.get_by_label("Email address").fill(READER)
    page.get_by_label("Name (optional)").fill("Zoë Quinn")
    page.get_by_label("Daily headlines").check()
    page.get_by_label("Breaking news").check()
    page.click("button:has-text('Subscribe')")
    assert page.inner_text("h1") == "Check your inbox"
    assert newsroom.query(
        "SELECT status FROM mailer_subscriptions_subscription WHERE address = ?",
        READER,
    ) == [("pending",), ("pending",)]

    # The confirmation email, through the queue and the real SMTP server.
    manage(newsroom.env, "send_mail")
    confirm = only_link(smtp_server, "confirm", newsroom.url)
    page.goto(confirm)
    assert page.inner_text("h1") == "Confirm your subscription"
    page.click("button:has-text('Confirm subscription')")
    assert page.inner_text("h1") == "Subscription confirmed"
    assert sorted(
        newsroom.query(
            "SELECT status FROM mailer_subscriptions_subscription WHERE address = ?",
            READER,
        )
    ) == [("active",), ("active",)]

    # The editor sends the issue to "Breaking news" only.
    page.goto(f"{newsroom.url}/admin/login/")
    page.fill("#id_username", "editor")
    page.fill("#id_password", "editor")
    page.click("input[type=submit]")
    page.wait_for_selector("#user-tools")
    send_issue_to_lists(page, newsroom, ["Breaking news"], resend=False)
    [first] = newsletters_to_reader(smtp_server)
    assert first.message["List-Id"].startswith("<breaking-news.")
    assert "Zoë Quinn" in first.message.get_body(("plain",)).get_content()
    # A list reader has a preferences link, so the issue's "Your newsletters"
    # segment is kept, in both parts.
    assert only_link(smtp_server, "preferences", newsroom.url)
    assert re.search(
        r'<a href="http[^"]+/newsletters/preferences/[^"/]+/"[^>]*>'
        r"Your newsletters</a>",
        first.message.get_body(("html",)).get_content(),
    )
    unsubscribe = only_link(smtp_server, "unsubscribe", newsroom.url)
    assert first.message["List-Unsubscribe"] == f"<{unsubscribe}>"

    # The reader leaves "Breaking news" from that email: GET asks, POST does.
    page.goto(unsubscribe)
    assert "Breaking news" in page.inner_text("main")
    assert "Daily headlines" not in page.inner_text("main")
    page.click("button:has-text('Unsubscribe')")
    assert page.inner_text("h1") == "Unsubscribed"
    assert dict(
        newsroom.query(
            "SELECT l.slug, s.status FROM mailer_subscriptions_subscription s "
            "JOIN mailer_subscriptions_mailinglist l ON l.id = s.mailing_list_id "
            "WHERE s.address = ?",
            READER,
        )
    ) == {"breaking-news": "unsubscribed", "daily-headlines": "active"}

    # The next issue, to both lists, still reaches her once, as a daily reader.
    send_issue_to_lists(
        page, newsroom, ["Daily headlines", "Breaking news"], resend=True
    )
    newsletters = newsletters_to_reader(smtp_server)
    assert len(newsletters) == 2
    assert newsletters[-1].message["List-Id"].startswith("<daily-headlines.")

    # The preference centre from that email shows where she stands.
    page.goto(only_link(smtp_server, "preferences", newsroom.url))
    assert page.get_by_label("Daily headlines").is_checked()
    assert not page.get_by_label("Breaking news").is_checked()
    assert page.get_by_label("Name").input_value() == "Zoë Quinn"

    # She changes her mind there: back on "Breaking news", a new name.
    page.get_by_label("Breaking news").check()
    page.get_by_label("Name").fill("Zoë Quinn-Obi")
    page.click("button:has-text('Save preferences')")
    assert page.inner_text("h1") == "Preferences saved"
    assert "Breaking news" in page.inner_text("main")
    assert sorted(
        newsroom.query(
            "SELECT status, name FROM mailer_subscriptions_subscription "
            "WHERE address = ?",
            READER,
        )
    ) == [("active", "Zoë Quinn-Obi"), ("active", "Zoë Quinn-Obi")]
