"""The editor's desk (issue 15): the job page as a read-only report, actions
behind confirmation pages with history, scheduling, and no accidental
resend. Driven with Django's test client; mail goes to the real test SMTP
server."""

from __future__ import annotations

import re
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.utils import timezone

import mailer
from mailer.jobs.expand import expand_pending_jobs
from mailer.jobs.progress import JobFinisher, SendProgress
from mailer.jobs.services import RenderedEmail, create_job, reschedule_jobs
from mailer.models import (
    JobStatus,
    LogResult,
    Message,
    MessageJob,
    MessageLog,
    MessageStatus,
    Priority,
)
from mailer.sending.engine import send_queued
from tests.conftest import by_recipient, newsletter
from tests.testapp.models import Reader, Story

pytestmark = pytest.mark.django_db

JOBS = "/admin/mailer/messagejob/"
STORIES = "/admin/testapp/story/"


def staff_with(*codenames: str) -> User:
    user = User.objects.create_user(
        "_".join(codenames) or "nobody", "staff@example.com", "pw", is_staff=True
    )
    for codename in codenames:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return User.objects.get(pk=user.pk)


def post_action(client, action: str, jobs, **extra):
    data = {"action": action, "_selected_action": [j.pk for j in jobs], **extra}
    return client.post(JOBS, data)


def offered_actions(response) -> set[str]:
    if response.context["action_form"] is None:
        return set()
    return {
        name
        for name, _label in response.context["action_form"].fields["action"].choices
        if name
    }


# -- the report -----------------------------------------------------------------


def test_no_permission_can_change_a_confirmed_jobs_content(editor_client):
    job = newsletter()
    page = editor_client.get(f"{JOBS}{job.pk}/change/")
    assert page.status_code == 200
    assert b'name="subject"' not in page.content
    assert b'name="body_text"' not in page.content
    changed = editor_client.post(
        f"{JOBS}{job.pk}/change/", {"subject": "Rewritten", "from_email": "x@y.z"}
    )
    assert changed.status_code == 403
    assert MessageJob.objects.get().subject == "Issue 7: [[mj:name]]"


def test_the_report_shows_outcomes_chart_failures_and_a_sample(
    editor_client, mailserver
):
    job = newsletter(3)
    expand_pending_jobs()
    send_queued()
    failed = Message.all_objects.filter(job=job).order_by("id").last()
    Message.all_objects.filter(pk=failed.pk).update(status=MessageStatus.FAILED)
    MessageLog.objects.create(
        job=job,
        message_pk=failed.pk,
        recipient=failed.to_address,
        result=LogResult.FAILED,
        smtp_code=550,
        reply="5.1.1 mailbox unavailable",
    )

    page = editor_client.get(f"{JOBS}{job.pk}/change/")

    html = page.content.decode()
    counts = dict(re.findall(r'data-count="(\w+)">([\d,]+)<', html))
    assert counts["sent"] == "2" and counts["failed"] == "1"
    assert counts["recipients"] == "3"
    sent_chart = html.split("mailer-sent-chart", 1)[1].split("</svg>", 1)[0]
    assert sent_chart.count("<rect") == 1  # one minute with sends
    assert "Outcomes over time" in html and 'data-result="sent"' in html
    assert "5.1.1 mailbox unavailable" in html and ">550<" in html
    assert "<iframe sandbox" in html
    assert "Hello Reader 0" in html  # the sample reader's own values
    assert "report.js" in html and "mailer/admin.css" in html


def test_progress_json_counts_by_outcome(editor_client):
    job = newsletter(4)
    expand_pending_jobs()
    data = editor_client.get(f"{JOBS}{job.pk}/progress.json").json()
    assert (data["queued"], data["sent"], data["recipients"]) == (4, 0, 4)
    assert data["finished"] is False


def test_reader_search_shows_their_attempts_and_the_email_as_sent(
    editor_client, mailserver
):
    job = newsletter(2)
    expand_pending_jobs()
    send_queued()
    sent = by_recipient(mailserver.messages)["r1@example.com"].message
    assert sent["To"] == "Reader 1 <r1@example.com>"

    page = editor_client.get(f"{JOBS}{job.pk}/change/", {"reader": "R1@example.com"})

    reader = page.context["reader"]
    assert [a.result for a in reader["attempts"]] == [LogResult.SENT]
    rebuilt = dict(reader["email"].headers)
    assert rebuilt["Message-ID"] == sent["Message-ID"]
    assert rebuilt["List-Unsubscribe"] == sent["List-Unsubscribe"]
    assert reader["email"].text == sent.get_body(("plain",)).get_content()
    missing = editor_client.get(f"{JOBS}{job.pk}/change/", {"reader": "x@example.com"})
    assert b"is not a reader of this job" in missing.content


def test_the_report_explains_readers_confirmed_but_not_queued(editor_client):
    from mailer.suppression import unsubscribe

    unsubscribe("r1@example.com")
    job = create_job(
        content=RenderedEmail(subject="S", body_text="B"),
        recipients=["r0@example.com", "r1@example.com", "not an address"],
    )
    expand_pending_jobs()
    page = editor_client.get(f"{JOBS}{job.pk}/change/")
    reasons = dict(page.context["report"].skip_reasons)
    assert reasons["on the don't-send list"] == 1
    assert sum(reasons.values()) == 2
    assert page.context["report"].counts["skipped"] == 2


# -- actions ----------------------------------------------------------------------


def test_pause_and_resume_with_confirmation_and_history(editor_client, mailserver):
    job = newsletter(3)
    expand_pending_jobs()
    confirm = post_action(editor_client, "pause", [job])
    assert b"Pause jobs" in confirm.content
    assert MessageJob.objects.get().status == JobStatus.QUEUED

    post_action(editor_client, "pause", [job], post="yes")

    assert MessageJob.objects.get().status == JobStatus.PAUSED
    assert send_queued().attempted == 0
    assert mailserver.count == 0
    post_action(editor_client, "resume", [job], post="yes")
    assert send_queued().attempted == 3
    assert mailserver.count == 3
    history = list(
        LogEntry.objects.filter(object_id=str(job.pk))
        .order_by("pk")
        .values_list("change_message", flat=True)
    )
    assert history[-2:] == ["Paused", "Resumed"]


def test_cancel_says_how_many_will_not_go_and_that_it_cannot_be_undone(
    editor_client,
):
    job = newsletter(5)
    confirm = post_action(editor_client, "cancel", [job])
    html = confirm.content.decode()
    assert "5 pending emails will not be sent." in html  # none expanded yet
    assert "cannot be undone" in html
    post_action(editor_client, "cancel", [job], post="yes")
    assert MessageJob.objects.get().status == JobStatus.CANCELLED
    assert expand_pending_jobs().queued == 0
    assert LogEntry.objects.filter(change_message="Cancelled").count() == 1


def test_retry_failed_needs_confirmation(editor_client):
    job = newsletter(2)
    expand_pending_jobs()
    Message.all_objects.filter(job=job).update(status=MessageStatus.FAILED, due_at=None)
    confirm = post_action(editor_client, "retry_failed_messages", [job])
    assert b"2 failed emails will be tried again." in confirm.content
    assert not Message.objects.exists()
    post_action(editor_client, "retry_failed_messages", [job], post="yes")
    assert Message.objects.count() == 2


def test_deleting_a_big_job_lists_no_messages(editor_client):
    job = newsletter(300)
    expand_pending_jobs()
    confirm = post_action(editor_client, "delete_selected", [job])
    html = confirm.content.decode()
    assert "r12@example.com" not in html
    assert "300" in html  # the count of messages
    post_action(editor_client, "delete_selected", [job], post="yes")
    assert not MessageJob.objects.exists()
    assert not Message.all_objects.exists()


# -- permissions ------------------------------------------------------------------


def test_view_only_staff_are_offered_no_state_changing_action(client):
    newsletter()
    client.force_login(staff_with("view_messagejob", "view_message"))
    assert offered_actions(client.get(JOBS)) == set()
    assert offered_actions(client.get("/admin/mailer/message/")) == set()
    assert client.get(f"{JOBS}{MessageJob.objects.get().pk}/change/").status_code == 200


def test_an_editor_who_may_send_watches_and_cancels_only_their_own_jobs(client):
    sender = staff_with("add_messagejob")
    mine = newsletter(2, created_by=sender)
    theirs = newsletter(2)
    client.force_login(sender)
    listing = client.get(JOBS)
    assert listing.status_code == 200
    assert {"pause", "cancel"} <= offered_actions(listing)
    assert client.get(f"{JOBS}{theirs.pk}/change/").status_code == 200

    post_action(client, "cancel", [mine, theirs], post="yes")

    assert MessageJob.objects.get(pk=mine.pk).status == JobStatus.CANCELLED
    assert MessageJob.objects.get(pk=theirs.pk).status == JobStatus.PENDING


def test_no_one_adds_an_empty_message_and_an_outcome_is_not_editable(editor_client):
    import mailer

    mailer.send_mail("Hi", "b", "a@example.com", ["b@example.com"])
    message = Message.all_objects.get()
    assert editor_client.get("/admin/mailer/message/add/").status_code == 403
    Message.all_objects.update(status=MessageStatus.SENT, due_at=None)
    page = editor_client.get(f"/admin/mailer/message/{message.pk}/change/")
    assert b'name="status"' not in page.content


def test_long_subjects_are_truncated_and_the_announces_filter_lists_used_models(
    editor_client,
):
    story = Story.objects.create(headline="Bridge")
    create_job(
        content=RenderedEmail(subject="x" * 300, body_text="b"),
        recipients=["a@example.com"],
        announced_object=story,
    )
    listing = editor_client.get(JOBS)
    cell = re.search(
        r'class="field-short_subject"><a [^>]*>(.*?)</', listing.content.decode()
    )
    assert cell.group(1).startswith("xxx") and len(cell.group(1)) < 80
    spec = next(
        f
        for f in listing.context["cl"].filter_specs
        if getattr(f, "parameter_name", "") == "announces"
    )
    assert [label for _pk, label in spec.lookup_choices] == ["Story"]


# -- scheduling -------------------------------------------------------------------


def test_a_scheduled_job_waits_then_goes(mailserver):
    later = timezone.now() + timedelta(hours=2)
    job = newsletter(2, send_at=later)
    assert expand_pending_jobs().queued == 0
    assert MessageJob.objects.get().display_status == "scheduled"
    status = StringIO()
    call_command("mailer_status", stdout=status)
    assert f"#{job.pk} [scheduled]" in status.getvalue()

    assert reschedule_jobs(MessageJob.objects.all(), None) == 1
    assert expand_pending_jobs().queued == 2
    assert send_queued().sent == 2


def test_a_naive_send_at_is_refused(settings):
    if not settings.USE_TZ:
        pytest.skip("naive datetimes are the site's own with USE_TZ = False")
    from mailer.exceptions import InvalidEmail

    with pytest.raises(InvalidEmail, match="aware"):
        newsletter(1, send_at=timezone.now().replace(tzinfo=None))


def test_the_confirmation_page_schedules_and_the_job_can_be_rescheduled(
    editor_client, settings
):
    settings.TIME_ZONE = "Europe/Paris"
    Reader.objects.create(email="ann@example.com", name="Ann")
    story = Story.objects.create(headline="Bridge")
    page = editor_client.post(
        STORIES, {"action": "send_email_update", "_selected_action": [story.pk]}
    )
    assert b'name="send_at"' in page.content and b"Europe/Paris" in page.content
    editor_client.post(
        STORIES,
        {
            "action": "send_email_update",
            "_selected_action": [story.pk],
            "post": "yes",
            "when": "at",
            "send_at": "2099-06-01T09:30",
        },
    )
    job = MessageJob.objects.get()
    if settings.USE_TZ:
        assert timezone.localtime(job.send_at).isoformat() == (
            "2099-06-01T09:30:00+02:00"
        )
    else:
        assert job.send_at.isoformat() == "2099-06-01T09:30:00"
    assert expand_pending_jobs().queued == 0
    post_action(
        editor_client,
        "reschedule",
        [job],
        post="yes",
        when="at",
        send_at="2099-06-02T10:00",
    )
    job.refresh_from_db()
    assert job.send_at.hour == (8 if settings.USE_TZ else 10)  # UTC when aware
    assert job.display_status == "scheduled"


def test_rescheduling_to_the_past_shows_the_page_again_and_changes_nothing(
    editor_client,
):
    job = newsletter(2)
    page = post_action(
        editor_client,
        "reschedule",
        [job],
        post="yes",
        when="at",
        send_at="2000-01-01T09:00",
    )
    assert "The time to send at is in the past." in page.content.decode()
    job.refresh_from_db()
    assert job.send_at is None
    assert not LogEntry.objects.filter(object_id=str(job.pk)).exists()
    post_action(editor_client, "reschedule", [job], post="yes", when="now")
    assert list(
        LogEntry.objects.filter(object_id=str(job.pk)).values_list(
            "change_message", flat=True
        )
    ) == ["Rescheduled to now"]


# -- the test email and the emailed column ----------------------------------------


def test_the_test_email_is_the_real_email(editor_client, mailserver, client):
    Reader.objects.create(email="ann@example.com", name="Ann")
    story = Story.objects.create(headline="Bridge")
    editor_client.post(
        STORIES,
        {
            "action": "send_email_update",
            "_selected_action": [story.pk],
            "send_test": "1",
        },
    )
    test = Message.all_objects.get()
    assert test.priority == Priority.HIGH
    send_queued()
    (received,) = [m.message for m in mailserver.messages]
    assert received["Subject"] == "[TEST] Breaking: Bridge"
    assert received["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert received["List-Id"].startswith("<story.")
    link = re.search(
        r"<https?://[^/]+(/mail/unsubscribe/[^>]+)>", received["List-Unsubscribe"]
    )
    html = received.get_body(("html",)).get_content()
    assert link.group(1) in html and "#unsubscribe-link-goes-here" not in html
    assert client.post(link.group(1)).status_code == 200
    from mailer.models import DontSendEntry

    assert DontSendEntry.objects.filter(address="editor@example.com").exists()


def test_the_sites_changelist_gets_an_emailed_column(editor_client):
    Reader.objects.create(email="ann@example.com", name="Ann")
    story = Story.objects.create(headline="Bridge")
    assert b"column-emailed" in editor_client.get(STORIES).content
    editor_client.post(
        STORIES,
        {"action": "send_email_update", "_selected_action": [story.pk], "post": "yes"},
    )
    Message.all_objects.update(status=MessageStatus.SENT)  # nothing yet expanded
    expand_pending_jobs()
    Message.all_objects.update(status=MessageStatus.SENT, due_at=None)
    row = editor_client.get(STORIES).content.decode()
    assert re.search(r'class="field-emailed">[^<]*, 1 reader<', row)


# -- status you can trust ---------------------------------------------------------


def test_a_job_is_done_when_send_mail_resolves_its_last_message(mailserver):
    newsletter(2)
    later = newsletter(1, send_at=timezone.now() + timedelta(days=1))
    out = StringIO()
    call_command("send_mail", stdout=out)
    assert (
        "Jobs waiting to be expanded (process_mail_jobs): 1; scheduled for later: 1"
        in out.getvalue()
    )
    expand_pending_jobs()
    call_command("send_mail", stdout=StringIO())
    statuses = dict(MessageJob.objects.values_list("pk", "status"))
    assert statuses.pop(later.pk) == JobStatus.PENDING
    assert list(statuses.values()) == [JobStatus.DONE]


# -- the web archive --------------------------------------------------------------


def test_the_archive_page_shows_the_email_without_personal_values(client, mailserver):
    job = newsletter(2)
    expand_pending_jobs()
    send_queued()
    from mailer.jobs.archive import archive_url

    url = archive_url(job.pk)
    assert url.startswith("https://news.example.com/mail/view/")
    path = url.removeprefix("https://news.example.com")
    page = client.get(path)
    html = page.content.decode()
    assert page.status_code == 200
    assert "Issue 7: reader" in html and "Hello reader" in html
    assert "r0@example.com" not in html and "Reader 0" not in html
    forged = path.replace(f"/{job.pk}-", f"/{job.pk + 1}-")
    assert client.get(forged).status_code == 404
    listing = client.get("/mail/archive/daily/").content.decode()
    assert path in listing


def test_templates_link_to_the_archive(mailserver):
    job = create_job(
        content=RenderedEmail(subject="S", body_text="Online: [[mj:archive_url]]"),
        recipients=["a@example.com"],
    )
    expand_pending_jobs()
    send_queued()
    from mailer.jobs.archive import archive_url

    (received,) = [m.message for m in mailserver.messages]
    assert received.get_content().strip() == f"Online: {archive_url(job.pk)}"


def test_the_report_offers_the_actions_that_fit_the_job(editor_client, client):
    job = newsletter(2)
    expand_pending_jobs()
    page = editor_client.get(f"{JOBS}{job.pk}/change/")
    assert [name for name, _label in page.context["job_actions"]] == [
        "pause",
        "cancel",
    ]
    confirm = editor_client.post(
        JOBS, {"action": "cancel", "_selected_action": [job.pk]}
    )
    assert b"2 pending emails will not be sent." in confirm.content
    client.force_login(staff_with("view_messagejob"))
    assert client.get(f"{JOBS}{job.pk}/change/").context["job_actions"] == []


def test_job_mail_in_messages_and_logs_names_its_job_and_shows_its_email(
    editor_client, mailserver
):
    job = newsletter(1)
    expand_pending_jobs()
    send_queued()
    message = Message.all_objects.get()
    logs = editor_client.get("/admin/mailer/messagelog/").content.decode()
    assert f"/admin/mailer/messagejob/{job.pk}/change/" in logs
    assert "Issue 7: [[mj:name]]" in logs
    page = editor_client.get(f"/admin/mailer/message/{message.pk}/change/")
    assert "Hello Reader 0" in page.content.decode()


def test_retry_now_writes_history(editor_client):
    import mailer

    mailer.send_mail("Hi", "b", "a@example.com", ["b@example.com"])
    message = Message.all_objects.get()
    Message.all_objects.update(status=MessageStatus.FAILED, due_at=None)
    editor_client.post(
        "/admin/mailer/message/",
        {"action": "retry_now", "_selected_action": [message.pk]},
    )
    assert Message.all_objects.get().status == MessageStatus.QUEUED
    entry = LogEntry.objects.get(object_id=str(message.pk))
    assert entry.change_message == "Retried now"


def test_a_job_is_done_the_moment_the_batch_with_its_last_message_is_recorded(
    mailserver,
):
    job = newsletter(2)
    expand_pending_jobs()
    for i in range(4):  # mail after the job's: the run goes on without it
        mailer.send_mail("Later", "Body", None, [f"later{i}@example.com"], "low")
    progress = SendProgress()
    seen = []

    def after_each_batch(result) -> None:
        progress(result)
        job.refresh_from_db()
        seen.append((result.attempted, job.status))

    result = send_queued(batch_size=2, on_progress=after_each_batch)

    assert result.sent == 6
    # Done right after the batch that resolved its last message, while the
    # run still had mail to send; not at the end of the run.
    assert seen[0] == (2, JobStatus.DONE)
    assert job.finished_at is not None


def test_the_finisher_waits_for_a_message_queued_again_below_its_cursor():
    job = newsletter(3)
    expand_pending_jobs()
    first, second, third = Message.all_objects.filter(job=job).order_by("id")
    finisher = JobFinisher()

    def resolve(*messages, status=MessageStatus.SENT) -> None:
        pks = [m.pk for m in messages]
        Message.all_objects.filter(pk__in=pks).update(status=status, due_at=None)

    resolve(first, second)
    assert finisher() == 0 and finisher.cursor == {job.pk: third.pk}
    # "Retry failed" queues an earlier message again while the last goes out.
    resolve(first, status=MessageStatus.QUEUED)
    resolve(third)
    assert finisher() == 0
    assert MessageJob.objects.get(pk=job.pk).status == JobStatus.QUEUED
    resolve(first, status=MessageStatus.DEFERRED)
    assert finisher() == 0  # deferred is still pending
    resolve(first, status=MessageStatus.FAILED)
    assert finisher() == 1
    assert MessageJob.objects.get(pk=job.pk).status == JobStatus.DONE
    assert finisher.cursor == {}
