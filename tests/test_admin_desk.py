"""The editor's desk (issue 15): the job page as a read-only report, actions
behind confirmation pages with history, scheduling, and no accidental
resend. Driven with Django's test client; mail goes to the real test SMTP
server."""

from __future__ import annotations

import re
from datetime import timedelta
from html.parser import HTMLParser
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
    # The sample's links open in a new tab, not inside the sandboxed frame.
    assert '<iframe sandbox="allow-popups allow-popups-to-escape-sandbox"' in html
    assert 'srcdoc="&lt;base target=&quot;_blank&quot;&gt;' in html
    assert "Hello Reader 0" in html  # the sample reader's own values
    assert "report.js" in html and "mailer/admin.css" in html


def the_list(html: str) -> tuple[str, str]:
    """The report's list fact: (its label, its value), tags stripped."""
    found = re.search(r"<dt>([^<]*)</dt><dd data-list>(.*?)</dd>", html, re.S)
    assert found, "no list on the report"
    return found[1], re.sub(r"<[^>]*>", "", found[2])


def test_the_report_names_the_list_or_labels_the_bare_list_id(editor_client):
    from mailer.subscriptions.models import ListMailing, MailingList

    job = newsletter(2)  # List-Id label "daily"
    report = f"{JOBS}{job.pk}/change/"
    assert the_list(editor_client.get(report).content.decode()) == (
        "List-Id",
        "daily",
    )
    daily = MailingList.objects.create(
        name="Daily Headlines", slug="daily", list_id="daily"
    )
    assert the_list(editor_client.get(report).content.decode()) == (
        "List",
        "Daily Headlines (List-Id daily)",
    )
    # Two lists with the label: which one is not known, the label stays.
    MailingList.objects.create(name="Daily (old)", slug="daily-old", list_id="daily")
    assert the_list(editor_client.get(report).content.decode())[0] == "List-Id"
    # A job sent to lists names them, whatever their labels.
    weekend = MailingList.objects.create(
        name="Weekend", slug="weekend", list_id="weekend"
    )
    ListMailing.objects.bulk_create(
        [ListMailing(job=job, mailing_list=m) for m in (daily, weekend)]
    )
    assert the_list(editor_client.get(report).content.decode()) == (
        "List",
        "Daily Headlines, Weekend (List-Id daily)",
    )


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

    done = editor_client.post(JOBS, confirmation_form(confirm), follow=True)

    assert Message.objects.count() == 2
    assert "2 failed messages queued again." in done.content.decode()


class _FormFields(HTMLParser):
    """The fields a browser posts from the form holding the submit button
    whose value is ``button``: named inputs (hidden ones too), checked
    checkboxes and radios, textareas, selects' selected options, and that
    button itself; other submit buttons are left out."""

    def __init__(self, button: str) -> None:
        super().__init__()
        self.button = button
        self.forms: list[list[tuple[str, str]]] = []
        self.pressed: list[bool] = []
        self.inside = False
        self.textarea: str | None = None
        self.select: str | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = {k: (v if v is not None else "") for k, v in attrs}
        if tag == "form":
            self.inside = True
            self.forms.append([])
            self.pressed.append(False)
            return
        if not self.inside:
            return
        fields = self.forms[-1]
        name = a.get("name")
        kind = a.get("type", "text").lower()
        if tag == "input" and kind == "submit":
            if a.get("value") == self.button:
                self.pressed[-1] = True
                if name:
                    fields.append((name, a["value"]))
        elif tag == "input" and name and "disabled" not in a:
            if kind in ("checkbox", "radio") and "checked" not in a:
                return
            default = "on" if kind in ("checkbox", "radio") else ""
            fields.append((name, a.get("value", default)))
        elif tag == "textarea" and name:
            self.textarea = name
            fields.append((name, ""))
        elif tag == "select" and name:
            self.select = name
        elif tag == "option" and self.select and "selected" in a:
            fields.append((self.select, a.get("value", "")))

    def handle_data(self, data: str) -> None:
        if self.textarea is not None:
            name, value = self.forms[-1][-1]
            self.forms[-1][-1] = (name, value + data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False
        elif tag == "textarea":
            self.textarea = None
        elif tag == "select":
            self.select = None


def confirmation_form(
    response, button: str = "Yes, I’m sure", **changes: str
) -> dict[str, list[str]]:
    """What pressing ``button`` on the page ``response`` posts, read from the
    page's own HTML (not from what the test expects the page to say), with
    ``changes`` as the editor's typing (a field's new value). Raises
    ``AssertionError`` when the page has no form with that button."""
    parser = _FormFields(button)
    parser.feed(response.content.decode())
    pairs = zip(parser.forms, parser.pressed, strict=True)
    chosen = [fields for fields, pressed in pairs if pressed]
    assert len(chosen) == 1, f"no single form with a {button!r} button"
    data: dict[str, list[str]] = {}
    for name, value in chosen[0]:
        data.setdefault(name, []).append(value)
    for name, value in changes.items():
        data[name] = [value]
    return data


def _failed_job() -> MessageJob:
    job = newsletter(2)
    expand_pending_jobs()
    Message.all_objects.filter(job=job).update(status=MessageStatus.FAILED, due_at=None)
    return job


def _queued_job() -> MessageJob:
    job = newsletter(2)
    expand_pending_jobs()
    return job


def _paused_job() -> MessageJob:
    from mailer.jobs.services import pause_jobs

    job = _queued_job()
    pause_jobs(MessageJob.objects.filter(pk=job.pk))
    return job


LATER = "2099-06-02T10:00"

#: (changelist, action, the selected object's set-up, the editor's typing on
#: the confirmation page, the effect "Yes, I'm sure" has).
DESK_ACTIONS = [
    (
        JOBS,
        "pause",
        _queued_job,
        {},
        lambda obj: MessageJob.objects.get(pk=obj.pk).status == JobStatus.PAUSED,
    ),
    (
        JOBS,
        "resume",
        _paused_job,
        {},
        lambda obj: MessageJob.objects.get(pk=obj.pk).status == JobStatus.QUEUED,
    ),
    (
        JOBS,
        "cancel",
        lambda: newsletter(2),
        {},
        lambda obj: MessageJob.objects.get(pk=obj.pk).status == JobStatus.CANCELLED,
    ),
    (
        JOBS,
        "reschedule",
        lambda: newsletter(2, send_at=timezone.now() + timedelta(days=1)),
        {"when": "at", "send_at": LATER},
        lambda obj: (
            timezone.localtime(MessageJob.objects.get(pk=obj.pk).send_at)
            .isoformat()
            .startswith(LATER)
        ),
    ),
    (
        JOBS,
        "retry_failed_messages",
        _failed_job,
        {},
        lambda obj: Message.objects.filter(job=obj).count() == 2,
    ),
    (
        JOBS,
        "delete_selected",
        lambda: newsletter(2),
        {},
        lambda obj: not MessageJob.objects.filter(pk=obj.pk).exists(),
    ),
    (
        STORIES,
        "send_email_update",
        lambda: (
            Reader.objects.create(email="ann@example.com"),
            Story.objects.create(headline="Bridge"),
        )[1],
        {},
        lambda obj: MessageJob.objects.filter(object_id=str(obj.pk)).exists(),
    ),
]


@pytest.mark.parametrize(
    ("changelist", "action", "make", "typing", "done"),
    DESK_ACTIONS,
    ids=[row[1] for row in DESK_ACTIONS],
)
def test_every_confirmation_page_does_what_it_asks_when_its_own_form_is_posted(
    editor_client, changelist, action, make, typing, done
):
    """The first step as the changelist's action menu posts it; the second
    exactly as the confirmation page's form posts it (its hidden fields, not
    the action's name as the test knows it)."""
    obj = make()
    confirm = editor_client.post(
        changelist, {"action": action, "_selected_action": [obj.pk]}
    )
    assert confirm.status_code == 200
    assert not done(obj)

    posted = editor_client.post(
        changelist, confirmation_form(confirm, **typing), follow=True
    )

    assert posted.status_code == 200
    assert "No action selected." not in posted.content.decode()
    assert done(obj)


def test_the_reports_buttons_lead_to_confirmation_pages_that_act(editor_client):
    """Each button on the report posts its own form to the job list; the
    page it leads to confirms, and its form does what the button said."""
    job = _failed_job()
    report = editor_client.get(f"{JOBS}{job.pk}/change/")
    confirm = editor_client.post(JOBS, confirmation_form(report, "Retry failed"))
    assert b"2 failed emails will be tried again." in confirm.content

    editor_client.post(JOBS, confirmation_form(confirm))

    assert Message.objects.filter(job=job).count() == 2


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


def test_the_emailed_column_counts_confirmed_readers_until_the_job_is_expanded(
    editor_client,
):
    from django.utils.formats import date_format

    for i in range(3):
        Reader.objects.create(email=f"r{i}@example.com")
    story = Story.objects.create(headline="Bridge")
    later = Story.objects.create(headline="Rain")
    confirm = editor_client.post(
        STORIES, {"action": "send_email_update", "_selected_action": [story.pk]}
    )
    editor_client.post(STORIES, confirmation_form(confirm))
    confirm = editor_client.post(
        STORIES, {"action": "send_email_update", "_selected_action": [later.pk]}
    )
    editor_client.post(
        STORIES, confirmation_form(confirm, when="at", send_at="2099-06-01T09:30")
    )
    # The admin's own long form ("Dec. 1, 2026, 11:28 a.m."), not the short
    # US "12/01/2026 11:28 a.m.".
    when, rain = (
        date_format(timezone.localtime(job.created_at), "DATETIME_FORMAT")
        for job in MessageJob.objects.order_by("pk")
    )
    assert not re.search(r"\d+/\d+/\d{4}", when)

    html = editor_client.get(STORIES).content.decode()

    assert cell(html, "field-emailed") == f"{rain}, 3 readers, scheduled"
    assert cell(html.split("Bridge", 1)[1], "field-emailed") == (
        f"{when}, 3 readers, queued"
    )
    expand_pending_jobs()
    Message.all_objects.filter(to_address="r0@example.com").update(
        status=MessageStatus.SENT, due_at=None
    )
    html = editor_client.get(STORIES).content.decode()
    assert cell(html.split("Bridge", 1)[1], "field-emailed") == f"{when}, 1 reader"


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


def test_the_archive_page_leaves_segments_out(client, mailserver):
    """Neutral values are empty, so a segment on a reader's value (their
    preferences link) is not on the public page."""
    job = create_job(
        content=RenderedEmail(
            subject="Issue[[mj?plan]] for [[mj:plan]][[/mj?plan]]",
            body_text="Hi [[mj:name]]\n[[mj?preferences_url]]Prefs: "
            "[[mj:preferences_url]]\n[[/mj?preferences_url]]Bye\n",
            body_html="<p>Hi</p>[[mj?preferences_url]]<a>Prefs</a>"
            "[[/mj?preferences_url]]<p>Bye</p>",
        ),
        recipients=[{"email": "a@example.com", "preferences_url": "https://p/1"}],
    )
    expand_pending_jobs()
    send_queued()
    from mailer.jobs.archive import archive_url

    page = client.get(archive_url(job.pk).removeprefix("https://news.example.com"))
    html = page.content.decode()
    assert page.status_code == 200
    assert (
        'title="Issue" srcdoc="&lt;base target=&quot;_top&quot;&gt;'
        '&lt;p&gt;Hi&lt;/p&gt;&lt;p&gt;Bye&lt;/p&gt;"'
    ) in html
    assert "Prefs" not in html and "mj?" not in html


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


# -- one way to write a count ---------------------------------------------------


def cell(html: str, css_class: str) -> str:
    """The text of the first ``<td class="{css_class}">`` of ``html``, tags
    stripped."""
    found = re.search(rf'<td class="{css_class}"[^>]*>(.*?)</td>', html, re.S)
    assert found, f"no {css_class} cell"
    return re.sub(r"<[^>]*>", "", found.group(1)).strip()


def bar_widths(html: str, job: MessageJob) -> dict[str, str]:
    """The job list's progress bar segments for ``job``'s row: ``{outcome:
    width}``, e.g. ``{"sent": "75%"}``."""
    row = re.search(
        rf'value="{job.pk}".*?<td class="field-progress">(.*?)</td>', html, re.S
    )
    assert row, f"no row for job {job.pk}"
    return dict(
        re.findall(r'class="mailer-bar-(\w+)" style="width: ([\d.]+%)"', row[1])
    )


def test_a_failed_job_does_not_look_finished_in_the_job_list(editor_client):
    failed = newsletter(20, subject="All failed")
    sent = newsletter(20, subject="All sent")
    mixed = newsletter(20, subject="Some failed")
    expand_pending_jobs()
    Message.all_objects.filter(job=failed).update(
        status=MessageStatus.FAILED, due_at=None
    )
    Message.all_objects.filter(job=sent).update(status=MessageStatus.SENT, due_at=None)
    five = Message.all_objects.filter(job=mixed).order_by("id")[:5]
    Message.all_objects.filter(pk__in=list(five.values_list("pk", flat=True))).update(
        status=MessageStatus.FAILED, due_at=None
    )
    Message.all_objects.filter(job=mixed, status=MessageStatus.QUEUED).update(
        status=MessageStatus.SENT, due_at=None
    )

    html = editor_client.get(JOBS).content.decode()

    assert bar_widths(html, failed) == {"failed": "100%"}
    assert bar_widths(html, sent) == {"sent": "100%"}
    assert bar_widths(html, mixed) == {"sent": "75%", "failed": "25%"}
    row = cell(html.split(f'value="{failed.pk}"', 1)[1], "field-progress")
    assert row == "0 sent · 20 failed"
    assert 'title="100% done: 20 failed"' in html
    assert 'class="mailer-failed-count">20 failed<' in html


def test_every_count_on_the_desk_is_written_grouped(editor_client):
    from django.contrib.messages import get_messages

    Reader.objects.bulk_create(
        [Reader(email=f"r{i}@example.com", name=f"R{i}") for i in range(5000)]
    )
    story = Story.objects.create(headline="Bridge reopens")
    chosen = {"action": "send_email_update", "_selected_action": [story.pk]}

    confirm = editor_client.post(STORIES, chosen).content.decode()
    assert "for 5,000 recipients" in confirm
    assert '<dd class="mailer-count">5,000</dd>' in confirm

    done = editor_client.post(STORIES, {**chosen, "post": "yes"})
    flashed = [str(m) for m in get_messages(done.wsgi_request)]
    assert flashed[0].startswith("Email update queued for 5,000 recipients.")
    job = MessageJob.objects.get()
    report = editor_client.get(f"{JOBS}{job.pk}/change/").content.decode()
    assert 'data-count="recipients">5,000<' in report
    assert 'data-count="unexpanded">5,000<' in report
    shown = editor_client.get(f"{JOBS}{job.pk}/progress.json").json()["shown"]
    assert (shown["recipients"], shown["unexpanded"]) == ("5,000", "5,000")

    expand_pending_jobs()
    cancel = post_action(editor_client, "cancel", [job]).content.decode()
    assert "5,000 pending emails will not be sent." in cancel
    assert "Bridge reopens</a> (queued, 5,000 readers)" in cancel
    Message.all_objects.filter(job=job).update(status=MessageStatus.SENT)
    jobs = editor_client.get(JOBS).content.decode()
    assert cell(jobs, "field-recipient_total") == "5,000"
    assert "5,000 sent · 0 failed" in cell(jobs, "field-progress")
    report = editor_client.get(f"{JOBS}{job.pk}/change/").content.decode()
    assert 'data-count="sent">5,000<' in report
    assert "peak 5,000 per minute" not in report  # no log rows: no chart
    assert cell(editor_client.get(STORIES).content.decode(), "field-emailed").endswith(
        ", 5,000 readers"
    )


# -- a refusal keeps the editor's choices ------------------------------------------


def test_a_refusal_shows_the_page_again_with_the_editors_choices(editor_client):
    from django.contrib.messages import get_messages

    from tests.subscriptions.helpers import make_lists

    daily, breaking = make_lists()  # no one subscribed: 0 active readers each
    Reader.objects.create(email="ann@example.com", name="Ann")
    story = Story.objects.create(headline="Bridge reopens")
    chosen = {"action": "send_email_update", "_selected_action": [story.pk]}
    # Emailed once before (followed: its message is shown and gone).
    editor_client.post(STORIES, {**chosen, "post": "yes"}, follow=True)
    choices = {**chosen, "post": "yes", "confirm_resend": "1", "when": "at"}

    for send_at, mailer_list, reason in [
        ("2099-06-01T09:30", daily, "There are no recipients to send this email to."),
        ("2001-06-01T09:30", breaking, "The time to send at is in the past."),
    ]:
        page = editor_client.post(
            STORIES, {**choices, "send_at": send_at, "mailer_lists": [mailer_list.pk]}
        )

        assert page.status_code == 200
        html = page.content.decode()
        assert 'name="confirm_resend" value="1" checked>' in html
        assert 'name="when" value="at" checked>' in html
        assert f'name="send_at" value="{send_at}">' in html
        assert f'name="mailer_lists" value="{mailer_list.pk}" checked>' in html
        shown = [str(m) for m in get_messages(page.wsgi_request)]
        assert shown == [f"Nothing was queued. {reason}"]
        assert f"Nothing was queued. {reason}</li>" in html
    assert MessageJob.objects.count() == 1


# -- from the success message to the report -------------------------------------


def test_the_success_message_links_to_the_new_jobs_report(editor_client):
    Reader.objects.create(email="ann@example.com", name="Ann")
    story = Story.objects.create(headline="Bridge reopens")

    page = editor_client.post(
        STORIES,
        {"action": "send_email_update", "_selected_action": [story.pk], "post": "yes"},
        follow=True,
    )

    job = MessageJob.objects.get()
    report = f"{JOBS}{job.pk}/change/"
    success = page.content.decode().split('class="success"', 1)[1].split("</li>")[0]
    assert success == (
        f'>Email update queued for 1 recipient. <a href="{report}">See its report.</a>'
    )
    assert editor_client.get(report).context["job"] == job


# -- recent actions stay true ----------------------------------------------------


def test_recent_actions_name_a_finished_job_without_a_stale_status(editor_client):
    Reader.objects.create(email="ann@example.com", name="Ann")
    story = Story.objects.create(headline="Bridge reopens")
    editor_client.post(
        STORIES,
        {"action": "send_email_update", "_selected_action": [story.pk], "post": "yes"},
    )
    job = MessageJob.objects.get()
    MessageJob.objects.filter(pk=job.pk).update(status=JobStatus.DONE)

    entry = LogEntry.objects.get(
        object_id=str(job.pk), content_type__model="messagejob"
    )
    assert entry.object_repr == "Breaking: Bridge reopens"
    recent = editor_client.get("/admin/").content.decode()
    assert "Breaking: Bridge reopens" in recent
    assert "(pending)" not in recent


# -- worker status in words ------------------------------------------------------


def test_the_worker_status_and_earlier_updates_read_naturally(editor_client):
    from mailer.models import WorkerState

    Reader.objects.create(email="ann@example.com", name="Ann")
    story = Story.objects.create(headline="Bridge reopens")
    chosen = {"action": "send_email_update", "_selected_action": [story.pk]}
    editor_client.post(STORIES, {**chosen, "post": "yes"}, follow=True)

    for seconds_ago, said in [
        (0, "A mail worker ran less than a minute ago, so it should arrive"),
        (90, "A mail worker ran 1\xa0minute ago, so it should arrive"),
        (180, "The last mail worker ran 3\xa0minutes ago: it goes out when"),
    ]:
        at = timezone.now() - timedelta(seconds=seconds_ago)
        WorkerState.objects.update_or_create(
            key="run:last", defaults={"value": {"at": at.isoformat(), "ok": True}}
        )
        page = editor_client.post(STORIES, chosen).content.decode()
        assert said in page
        assert " 0\xa0minutes" not in page
    # The update confirmed a moment ago, in the "emailed before" table.
    assert "(less than a minute ago)" in page
