"""The editor's desk in headless Chromium (Debian's /usr/bin/chromium, driven
by Playwright) against pytest-django's live server: the report with its
chart and live counts, reader search, pause/resume, cancel with its
confirmation, schedule then reschedule, the resend warning, the archive,
and what a send-only editor and a view-only user are offered. One browser
for the module; screenshots in /tmp/desk-*.png."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.utils import timezone

from mailer.jobs.expand import expand_pending_jobs
from mailer.models import (
    JobStatus,
    LogResult,
    Message,
    MessageJob,
    MessageLog,
    MessageStatus,
)
from mailer.sending.engine import send_queued
from tests.conftest import newsletter
from tests.system.conftest import press_yes_im_sure
from tests.testapp.models import Reader, Story

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run"]
# Playwright's sync API runs an event loop in this thread; the test's own
# ORM calls are plain synchronous code between browser steps.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "1")


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def open_as(browser, live_server):
    """``open_as(user)`` -> a page logged in as ``user``."""
    contexts = []

    def opener(user):
        client = Client()
        client.force_login(user)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.add_cookies(
            [
                {
                    "name": "sessionid",
                    "value": client.cookies["sessionid"].value,
                    "url": live_server.url,
                }
            ]
        )
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        return page

    yield opener
    for context in contexts:
        context.close()


def act_on_jobs(page, live_server, action: str) -> None:
    page.goto(f"{live_server.url}/admin/mailer/messagejob/")
    page.locator("input[name=_selected_action]").first.check()
    page.select_option("select[name=action]", action)
    page.click("button[name=index]")


def test_report_with_chart_live_counts_and_reader_search(
    open_as, live_server, editor, mailserver
):
    job = newsletter(5)
    expand_pending_jobs()
    send_queued()
    # One reader's email is still on its way: the job is not finished.
    newest = Message.all_objects.filter(job=job).order_by("id").last()
    Message.all_objects.filter(pk=newest.pk).update(status=MessageStatus.DEFERRED)
    # Earlier attempts in the log, for the outcomes chart's other buckets.
    for minutes_ago, result in [(3, LogResult.DEFERRED), (3, LogResult.DEFERRED)]:
        MessageLog.objects.create(
            job=job,
            recipient=newest.to_address,
            result=result,
            created_at=timezone.now() - timedelta(minutes=minutes_ago),
        )
    MessageLog.objects.create(
        job=job,
        recipient=newest.to_address,
        result=LogResult.IN_DOUBT,
        created_at=timezone.now() - timedelta(minutes=2),
    )
    page = open_as(editor)

    page.goto(f"{live_server.url}/admin/mailer/messagejob/{job.pk}/change/")

    page.wait_for_selector("[data-refreshed]")  # report.js fetched the counts
    assert page.locator('[data-count="sent"]').inner_text() == "4"
    assert page.locator("svg.mailer-sent-chart rect").count() == 1
    sent = page.locator('svg.mailer-outcomes-chart rect[data-result="sent"]')
    assert sent.get_attribute("data-count") == "5"  # the log: five were sent
    deferred = page.locator('svg.mailer-outcomes-chart rect[data-result="deferred"]')
    assert deferred.get_attribute("data-count") == "2"
    page.locator("svg.mailer-outcomes-chart").screenshot(path="/tmp/desk-outcomes.png")
    frame = page.frame_locator("#mailer-sample iframe")
    assert "Hello Reader" in frame.locator("p").inner_text()
    page.locator("#mailer-sample iframe").scroll_into_view_if_needed()
    page.screenshot(path="/tmp/desk-report.png", full_page=True)
    # The counts follow the queue without a reload.
    Message.all_objects.filter(pk=newest.pk).update(status=MessageStatus.FAILED)
    MessageLog.objects.create(
        job=job, recipient=newest.to_address, result=LogResult.FAILED, smtp_code=550
    )
    page.wait_for_function(
        "document.querySelector('[data-count=\"failed\"]').textContent === '1'",
        timeout=12_000,
    )
    # The outcomes chart follows too, redrawn by the server.
    failed = page.locator('svg.mailer-outcomes-chart rect[data-result="failed"]')
    assert failed.get_attribute("data-count") == "1"

    assert page.locator("[data-status]").inner_text() == "done"
    page.fill("input[name=reader]", "r3@example.com")
    page.click("#mailer-reader-search input[type=submit]")
    reader = page.locator("#mailer-reader")
    assert "r3@example.com: sent" in reader.inner_text()
    assert page.locator("#mailer-attempts tbody tr").count() == 1
    assert "Hello Reader 3" in reader.locator("pre.mailer-text").inner_text()
    page.screenshot(path="/tmp/desk-reader.png", full_page=True)


def test_pause_resume_and_cancel_with_confirmation(open_as, live_server, editor):
    newsletter(40)
    expand_pending_jobs()
    page = open_as(editor)

    act_on_jobs(page, live_server, "pause")
    page.click("input[type=submit]")
    page.wait_for_selector(".messagelist")
    assert MessageJob.objects.get().status == JobStatus.PAUSED
    act_on_jobs(page, live_server, "resume")
    page.click("input[type=submit]")
    page.wait_for_selector(".messagelist")
    assert MessageJob.objects.get().status == JobStatus.QUEUED

    act_on_jobs(page, live_server, "cancel")
    text = page.locator("#content").inner_text()
    assert "40 pending emails will not be sent." in text
    assert "cannot be undone" in text
    page.screenshot(path="/tmp/desk-cancel.png", full_page=True)
    page.click("input[type=submit]")
    page.wait_for_selector(".messagelist")
    assert MessageJob.objects.get().status == JobStatus.CANCELLED
    page.click("text=Issue 7")
    page.click("a.historylink")
    history = page.locator("#change-history").inner_text()
    assert "Paused" in history and "Resumed" in history and "Cancelled" in history


def test_retry_failed_from_the_report_queues_them_again(open_as, live_server, editor):
    job = newsletter(3)
    expand_pending_jobs()
    Message.all_objects.filter(job=job).update(status=MessageStatus.FAILED, due_at=None)
    sent = newsletter(3, subject="Everything sent")
    expand_pending_jobs()
    Message.all_objects.filter(job=sent).update(status=MessageStatus.SENT, due_at=None)
    page = open_as(editor)
    # In the job list the failed job's bar is all red, the sent one's green.
    page.goto(f"{live_server.url}/admin/mailer/messagejob/")
    row = page.locator("#result_list tbody tr", has_text="Issue 7")
    bar = row.locator(".mailer-bar").bounding_box()
    failed = row.locator(".mailer-bar-failed").bounding_box()
    assert failed["width"] >= bar["width"] - 2  # the border, 1px a side
    assert page.locator("#result_list .mailer-bar-sent").count() == 1
    page.locator("#result_list").screenshot(path="/tmp/desk-jobs-bars.png")
    page.goto(f"{live_server.url}/admin/mailer/messagejob/{job.pk}/change/")

    page.click("input[type=submit][value='Retry failed']")
    warning = page.locator("#mailer-action-message").inner_text()
    assert warning == "3 failed emails will be tried again."
    press_yes_im_sure(page)

    done = page.locator(".messagelist").inner_text()
    assert "3 failed messages queued again." in done
    assert Message.objects.filter(job=job).count() == 3
    assert not Message.all_objects.filter(status=MessageStatus.FAILED).exists()


def test_schedule_reschedule_and_the_resend_warning(open_as, live_server, editor):
    Reader.objects.create(email="ann@example.com", name="Ann")
    story = Story.objects.create(headline="Bridge reopens")
    old = newsletter(3)
    old.content_type_id = (
        __import__("django.contrib.contenttypes.models", fromlist=["ContentType"])
        .ContentType.objects.get_for_model(Story)
        .pk
    )
    old.object_id = str(story.pk)
    old.created_by = editor
    old.save()
    MessageJob.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - timedelta(days=3)
    )
    page = open_as(editor)
    page.goto(f"{live_server.url}/admin/testapp/story/")
    assert page.locator("th.column-emailed").count() == 1
    page.locator("input[name=_selected_action]").first.check()
    page.select_option("select[name=action]", "send_email_update")
    page.click("button[name=index]")
    warning = page.locator(".mailer-earlier").inner_text()
    assert "3\xa0days ago" in warning and "0 / 3" in warning
    page.check("input[name=when][value=at]")
    page.fill("input[name=send_at]", "2099-06-01T09:30")
    page.screenshot(path="/tmp/desk-confirm.png", full_page=True)
    press_yes_im_sure(page)
    # Without the tick nothing is queued.
    assert "Nothing was queued." in page.locator(".messagelist").inner_text()
    page.check("input[name=confirm_resend]")
    page.check("input[name=when][value=at]")
    page.fill("input[name=send_at]", "2099-06-01T09:30")
    press_yes_im_sure(page)
    page.wait_for_selector(".messagelist .success")
    job = MessageJob.objects.exclude(pk=old.pk).get()
    assert job.send_at is not None

    page.goto(f"{live_server.url}/admin/mailer/messagejob/")
    assert "scheduled" in page.locator("#result_list").inner_text()
    page.locator(f"input[name=_selected_action][value='{job.pk}']").check()
    page.select_option("select[name=action]", "reschedule")
    page.click("button[name=index]")
    page.check("input[name=when][value=at]")
    page.fill("input[name=send_at]", "2099-06-02T10:00")
    page.click("input[type=submit]")
    page.wait_for_selector(".messagelist .success")
    job.refresh_from_db()
    assert timezone.localtime(job.send_at).day == 2


def test_send_only_editor_and_view_only_user(open_as, live_server, editor):
    sender = User.objects.create_user("sender", "s@example.com", "pw", is_staff=True)
    sender.user_permissions.add(Permission.objects.get(codename="add_messagejob"))
    viewer = User.objects.create_user("viewer", "v@example.com", "pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_messagejob"))
    newsletter(2, created_by=sender)

    page = open_as(sender)
    page.goto(f"{live_server.url}/admin/mailer/messagejob/")
    options = page.locator("select[name=action] option").all_inner_texts()
    assert "Cancel selected jobs" in options and "Pause selected jobs" in options
    page.click("#result_list tbody th a")
    page.wait_for_selector("#mailer-counts")

    page = open_as(viewer)
    page.goto(f"{live_server.url}/admin/mailer/messagejob/")
    assert page.locator("select[name=action]").count() == 0
    page.screenshot(path="/tmp/desk-viewer.png", full_page=True)


def test_the_archive_page(open_as, live_server, editor, mailserver, settings):
    settings.MAILER_SITE_URL = live_server.url
    job = newsletter(2, subject="Issue 7")
    expand_pending_jobs()
    send_queued()
    page = open_as(editor)
    page.goto(f"{live_server.url}/mail/archive/daily/")
    page.click("#archive-list a")
    assert page.locator("#archive-subject").inner_text() == "Issue 7"
    body = page.frame_locator("iframe").locator("p").inner_text()
    assert body == "Hello reader"
    assert str(job.pk) in page.url
    page.screenshot(path="/tmp/desk-archive.png", full_page=True)


def boxes_overlap(a: dict, b: dict) -> bool:
    """Whether two Playwright bounding boxes (x, y, width, height in CSS
    pixels) share any area."""
    return (
        a["x"] < b["x"] + b["width"]
        and b["x"] < a["x"] + a["width"]
        and a["y"] < b["y"] + b["height"]
        and b["y"] < a["y"] + a["height"]
    )


def test_the_report_title_never_runs_under_the_history_button(
    open_as, live_server, editor
):
    subject = (
        "The Daily: council approves the bridge repairs, the library reopens "
        "on Saturday, and the weekend brings rain to the whole valley"
    )
    job = newsletter(2, subject=subject)
    page = open_as(editor)
    page.goto(f"{live_server.url}/admin/mailer/messagejob/{job.pk}/change/")

    for width in (1280, 900, 600, 390):
        page.set_viewport_size({"width": width, "height": 900})
        title = page.locator("#content h1")
        tools = page.locator(".object-tools")
        assert title.inner_text() == subject
        assert tools.is_visible()
        page.screenshot(path=f"/tmp/desk-report-title-{width}.png")
        title_box, tools_box = title.bounding_box(), tools.bounding_box()
        assert not boxes_overlap(title_box, tools_box), (width, title_box, tools_box)


def test_the_report_with_headers_open_fits_the_window(open_as, live_server, editor):
    """Long header values (List-Unsubscribe) wrap, and the Failures table's
    "When" stays on one line, at 1280x900."""
    job = newsletter(3)
    expand_pending_jobs()
    Message.all_objects.filter(job=job).update(status=MessageStatus.FAILED, due_at=None)
    for message in Message.all_objects.filter(job=job):
        MessageLog.objects.create(
            job=job,
            message_pk=message.pk,
            recipient=message.to_address,
            result=LogResult.FAILED,
            smtp_code=550,
            reply="5.1.1 <" + message.to_address + ">: Recipient address rejected: "
            "User unknown in virtual mailbox table " * 3,
        )
    page = open_as(editor)
    page.goto(f"{live_server.url}/admin/mailer/messagejob/{job.pk}/change/")

    page.locator("#mailer-sample details.mailer-headers summary").click()

    headers = page.locator("#mailer-sample details.mailer-headers")
    assert headers.get_attribute("open") is not None
    assert "List-Unsubscribe" in headers.inner_text()
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    page.screenshot(path="/tmp/desk-report-headers.png", full_page=True)
    assert widths[0] <= widths[1], widths
    # A text's client rects: one per line it takes.
    lines = page.evaluate(
        """[...document.querySelectorAll('#mailer-failures td.mailer-when')].map(
            (td) => { const r = document.createRange(); r.selectNodeContents(td);
                      return r.getClientRects().length; })"""
    )
    assert lines == [1, 1, 1]
    page.locator("#mailer-failures").screenshot(path="/tmp/desk-failures.png")
