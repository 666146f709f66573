"""The "Send email update" admin action: what the editor sees and what it
queues. The request never sends mail and never writes per-recipient rows."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.utils import timezone

from mailer.jobs.expand import expand_pending_jobs
from mailer.models import Message, MessageJob, Priority
from mailer.sending.engine import send_queued
from tests.conftest import by_recipient
from tests.testapp.admin import StoryAdmin
from tests.testapp.models import Reader, Story

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/testapp/story/"


@pytest.fixture
def readers(db):
    Reader.objects.bulk_create(
        [
            Reader(email="ann@example.com", name="Ann"),
            Reader(email="bob@example.com", name='Bob "B" <Builder>'),
            Reader(email="cat@example.com", name="Cat"),
            Reader(email="ANN@example.com", name="Ann again"),
            Reader(email="gone@example.com", name="Gone", active=False),
        ]
    )


def act(client, stories, **extra):
    data = {"action": "send_email_update", "_selected_action": [s.pk for s in stories]}
    data.update(extra)
    return client.post(CHANGELIST, data)


def flash(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_only_users_who_may_add_jobs_see_the_action(client, db):
    Story.objects.create(headline="Bridge reopens")
    staff = User.objects.create_user("staff", "s@example.com", "pw", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_story"))
    client.force_login(staff)
    assert b"send_email_update" not in client.get(CHANGELIST).content

    staff.user_permissions.add(Permission.objects.get(codename="add_messagejob"))
    staff = User.objects.get(pk=staff.pk)  # drop the permission cache
    client.force_login(staff)
    assert b"send_email_update" in client.get(CHANGELIST).content


def test_confirmation_page_shows_what_will_be_sent(editor_client, readers):
    story = Story.objects.create(headline="Bridge reopens", body="At last.")

    response = act(editor_client, [story])

    assert response.status_code == 200
    page = response.content.decode()
    assert "Breaking: Bridge reopens" in page
    assert "The Daily &lt;news@example.com&gt;" in page
    # Ann twice in different case counts once; inactive Gone not at all.
    assert '<dd class="mailer-count">3</dd>' in page
    assert "<iframe sandbox" in page and "srcdoc=" in page
    # The preview is personalised for the editor.
    assert "Hello Eddie Tor," in page
    assert "Yes, I’m sure" in page
    assert not MessageJob.objects.exists()
    assert not Message.all_objects.exists()


def test_the_preview_is_the_editors_email_and_names_its_segments(
    editor_client, readers, monkeypatch
):
    """The editor has no ``preferences_url``: their preview, like their test
    email, leaves that segment out, and the page says it exists."""
    from mailer.jobs.actions import EmailUpdate

    monkeypatch.setattr(
        StoryAdmin,
        "email_update",
        EmailUpdate(
            subject="Morning",
            text_template="testapp/segments/issue.txt",
            html_template="testapp/segments/issue.html",
            recipients=lambda story: Reader.objects.values("email", "name"),
        ),
    )
    story = Story.objects.create(headline="Bridge reopens")

    page = act(editor_client, [story]).content.decode()

    assert (
        '<p class="mailer-segments">Some parts are shown only to readers who have '
        "a value for: preferences_url."
    ) in page
    text = re.search(r'<pre class="mailer-text">(.*?)</pre>', page, re.S).group(1)
    assert text.startswith("Hello Eddie Tor,\n\nBridge reopens\nUnsubscribe: ")
    assert "newsletters" not in text and "mj?" not in page
    assert not MessageJob.objects.exists()


def test_confirming_queues_one_job_per_object_and_sends_nothing(
    editor_client, readers, mailserver
):
    stories = [Story.objects.create(headline=f"Story {i}") for i in range(2)]

    response = act(editor_client, stories, post="yes")

    assert response.status_code == 302
    jobs = MessageJob.objects.order_by("id")
    links = ", ".join(
        f'<a href="/admin/mailer/messagejob/{job.pk}/change/">'
        f"{job.announced_object}</a>"
        for job in jobs
    )
    assert flash(response) == [
        f"2 email updates queued: 6 emails in all. Reports: {links}."
    ]
    assert {job.announced_object for job in jobs} == set(stories)
    assert [job.recipient_count for job in jobs] == [3, 3]
    assert {job.created_by.username for job in jobs} == {"editor"}
    assert {job.subject for job in jobs} == {"Breaking: Story 0", "Breaking: Story 1"}
    # Out of band: no per-recipient row and no email inside the request.
    assert not Message.all_objects.exists()
    assert mailserver.count == 0


def test_each_reader_gets_one_personalised_email(editor_client, readers, mailserver):
    story = Story.objects.create(headline="Bridge reopens", body="At last.")
    act(editor_client, [story], post="yes")

    expand_pending_jobs()
    send_queued()

    by_rcpt = {a: r.message for a, r in by_recipient(mailserver.messages).items()}
    assert sorted(by_rcpt) == ["ann@example.com", "bob@example.com", "cat@example.com"]
    bob = by_rcpt["bob@example.com"]
    assert bob["Subject"] == "Breaking: Bridge reopens"
    assert 'Hello Bob "B" <Builder>,' in bob.get_body(("plain",)).get_content()
    html = bob.get_body(("html",)).get_content()
    assert "Hello Bob &quot;B&quot; &lt;Builder&gt;," in html
    assert "Hello Ann," in by_rcpt["ann@example.com"].get_body(("plain",)).get_content()


def test_resend_within_the_guard_is_refused_unless_confirmed(editor_client, readers):
    story = Story.objects.create(headline="Bridge reopens")
    act(editor_client, [story], post="yes")

    again = act(editor_client, [story], post="yes")

    assert again.status_code == 200  # back on the confirmation page
    assert "had an email update before" in flash(again)[-1]
    assert "This was emailed before" in again.content.decode()
    assert MessageJob.objects.count() == 1

    confirmed = act(editor_client, [story], post="yes", confirm_resend="1")
    assert confirmed.status_code == 302
    assert MessageJob.objects.count() == 2


def test_an_object_emailed_days_ago_still_needs_the_tick(
    editor_client, readers, settings
):
    settings.MAILER_RESEND_GUARD = timedelta(minutes=5)
    story = Story.objects.create(headline="Bridge reopens")
    act(editor_client, [story], post="yes")
    MessageJob.objects.update(created_at=timezone.now() - timedelta(days=3))

    again = act(editor_client, [story], post="yes")
    assert again.status_code == 200
    assert "3\xa0days ago" in again.content.decode()
    assert MessageJob.objects.count() == 1
    assert (
        act(editor_client, [story], post="yes", confirm_resend="1").status_code == 302
    )
    assert MessageJob.objects.count() == 2


def test_send_a_test_to_me_queues_one_high_priority_email(
    editor_client, readers, mailserver
):
    story = Story.objects.create(headline="Bridge reopens")

    response = act(editor_client, [story], post="yes", send_test="1")

    assert response.status_code == 200
    assert "test email is queued for editor@example.com" in flash(response)[0]
    assert not MessageJob.objects.exists()
    test_message = Message.all_objects.get()
    assert test_message.priority == Priority.HIGH
    assert mailserver.count == 0  # queued, not sent inside the request
    send_queued()
    (received,) = mailserver.messages
    assert received.rcpt_tos == ["editor@example.com"]
    assert received.message["Subject"] == "[TEST] Breaking: Bridge reopens"


def test_a_template_error_is_shown_and_nothing_is_queued(
    editor_client, readers, monkeypatch
):
    broken = StoryAdmin.email_update.__class__(
        **{**vars(StoryAdmin.email_update), "text_template": "testapp/broken_email.txt"}
    )
    monkeypatch.setattr(StoryAdmin, "email_update", broken)
    story = Story.objects.create(headline="Bridge reopens")

    for extra in ({}, {"post": "yes"}):
        response = act(editor_client, [story], **extra)
        assert response.status_code == 302
        message = flash(response)[-1]
        assert message.startswith("Nothing was queued. Email template has an error")
    assert not MessageJob.objects.exists()
    assert not Message.all_objects.exists()


def test_a_missing_template_is_shown_and_nothing_is_queued(
    editor_client, readers, monkeypatch
):
    missing = StoryAdmin.email_update.__class__(
        **{**vars(StoryAdmin.email_update), "html_template": "testapp/nope.html"}
    )
    monkeypatch.setattr(StoryAdmin, "email_update", missing)
    story = Story.objects.create(headline="Bridge reopens")

    response = act(editor_client, [story], post="yes")

    assert flash(response) == [
        "Nothing was queued. Email template not found: testapp/nope.html."
    ]
    assert not MessageJob.objects.exists()


def test_nobody_to_send_to_is_a_clear_error(editor_client, db):
    story = Story.objects.create(headline="Bridge reopens")
    response = act(editor_client, [story], post="yes")
    assert response.status_code == 200  # the confirmation page again
    assert flash(response) == [
        "Nothing was queued. There are no recipients to send this email to."
    ]
    assert not MessageJob.objects.exists()


def summary_line(page) -> str:
    """The confirmation page's first line, spaces collapsed."""
    found = re.search(r'<p id="mailer-summary">(.*?)</p>', page.content.decode(), re.S)
    assert found, "no summary line"
    return " ".join(found.group(1).split())


def test_the_confirmation_page_names_the_objects_and_counts_emails_not_people(
    editor_client, readers
):
    stories = [Story.objects.create(headline=f"Story {i}") for i in range(2)]

    one = summary_line(act(editor_client, stories[:1]))
    two = summary_line(act(editor_client, stories))

    assert one == "This will queue an email update about this story for 3 recipients:"
    assert two == (
        "This will queue 2 email updates, one about each of these 2 stories, "
        "for 3 recipients each (6 emails in all):"
    )


def test_the_summary_gives_the_range_when_objects_have_different_readers():
    from mailer.jobs.actions import summary

    assert summary(Story._meta, [1, 5_000, 20]) == (
        "This will queue 3 email updates, one about each of these 3 stories, "
        "for 1 to 5,000 recipients each (5,021 emails in all):"
    )
    assert summary(Story._meta, [1]) == (
        "This will queue an email update about this story for 1 recipient:"
    )
