"""Jobs: expansion into one message per recipient, job progress, cancel and
retry, and the ``process_mail_jobs`` / ``mailer_status`` commands."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.utils.html import strip_tags

from mailer.exceptions import InvalidEmail, TemplateProblem
from mailer.jobs.expand import ExpansionAbandoned, expand_job, expand_pending_jobs
from mailer.jobs.services import RenderedEmail, create_job, job_progress, render_email
from mailer.models import (
    DontSendEntry,
    JobStatus,
    LogResult,
    Message,
    MessageJob,
    MessageLog,
    MessageStatus,
)
from mailer.sending.engine import send_queued
from tests.conftest import by_recipient
from tests.testapp.models import Story

pytestmark = pytest.mark.django_db

CONTENT = RenderedEmail(
    subject="Headlines for [[mj:name]]",
    body_text="Hello [[mj:name]] <[[mj:email]]>\n",
    body_html="<p>Hello [[mj:name]]</p>",
)


def job_for(recipients, **kw) -> MessageJob:
    return create_job(content=CONTENT, recipients=recipients, **kw)


def command(name: str, *args) -> str:
    out = StringIO()
    call_command(name, *args, stdout=out)
    return out.getvalue()


def test_expansion_makes_one_message_per_recipient_with_its_context():
    job = job_for([{"email": "ann@example.com", "name": "Ann"}, "bob@example.com"])

    result = expand_pending_jobs()

    assert (result.queued, result.skipped) == (2, 0)
    rows = Message.all_objects.order_by("to_address").values_list(
        "to_address", "context", "job_id", "mime", "subject"
    )
    # No copy of the body: job messages read the job's content.
    assert list(rows) == [
        ("ann@example.com", {"name": "Ann"}, job.pk, None, ""),
        ("bob@example.com", None, job.pk, None, ""),
    ]
    job.refresh_from_db()
    assert (job.status, job.expanded_count) == (JobStatus.QUEUED, 2)


def test_duplicates_in_any_case_are_queued_once():
    addresses = [f"Reader{i % 100}@Example.com".swapcase() for i in range(10_000)]
    addresses += [f"reader{i}@example.com" for i in range(100)]
    job = job_for(addresses)
    assert job.recipient_count == 100  # deduplicated at the click already

    expand_pending_jobs()

    assert Message.all_objects.count() == 100
    assert (
        len(
            {
                a.lower()
                for a in Message.all_objects.values_list("to_address", flat=True)
            }
        )
        == 100
    )


def test_invalid_and_suppressed_addresses_are_skipped_and_logged():
    DontSendEntry.objects.create(address="Left@Example.com")
    job = job_for(["ok@example.com", "not-an-address", "left@example.com", "a@b@c"])

    result = expand_pending_jobs()

    assert list(Message.all_objects.values_list("to_address", flat=True)) == [
        "ok@example.com"
    ]
    assert result.skipped == 3
    logs = dict(
        MessageLog.objects.filter(result=LogResult.SKIPPED).values_list(
            "recipient", "reply"
        )
    )
    assert logs.keys() == {"not-an-address", "left@example.com", "a@b@c"}
    assert "Invalid address" in logs["not-an-address"]
    assert "don't-send" in logs["left@example.com"]
    job.refresh_from_db()
    assert job.skipped_count == 3


def test_expansion_resumes_from_its_cursor_without_duplicates():
    job = job_for([f"r{i}@example.com" for i in range(95)])
    chunks = []

    def stop_after_two_chunks() -> bool:
        return len(chunks) >= 2

    expand_job(
        job.pk,
        chunk_size=20,
        should_stop=stop_after_two_chunks,
        on_chunk=lambda done, total: chunks.append(done),
    )
    job.refresh_from_db()
    assert (job.expanded_count, job.status) == (40, JobStatus.EXPANDING)
    assert Message.all_objects.count() == 40

    expand_pending_jobs(chunk_size=20)

    assert Message.all_objects.count() == 95
    assert Message.all_objects.values("to_address").distinct().count() == 95
    job.refresh_from_db()
    assert (job.expanded_count, job.status) == (95, JobStatus.QUEUED)


def test_an_expander_whose_cursor_moved_on_backs_off():
    job = job_for([f"r{i}@example.com" for i in range(30)])

    def another_process_commits_the_next_chunk(done: int, total: int) -> None:
        MessageJob.objects.filter(pk=job.pk).update(expanded_count=done + 10)

    with pytest.raises(ExpansionAbandoned):
        expand_job(
            job.pk, chunk_size=10, on_chunk=another_process_commits_the_next_chunk
        )
    # It wrote its first chunk only; the second was the other process's.
    assert Message.all_objects.count() == 10


def test_an_empty_recipient_list_is_refused():
    with pytest.raises(InvalidEmail, match="no recipients"):
        job_for([])
    with pytest.raises(InvalidEmail, match="no recipients"):
        job_for(["", "   "])
    assert not MessageJob.objects.exists()


def test_a_template_that_raises_is_a_clear_error():
    class Exploding:
        def __str__(self):
            raise RuntimeError("kaboom")

    with pytest.raises(TemplateProblem, match="RuntimeError: kaboom"):
        render_email(
            subject=lambda obj: str(Exploding()),
            text_template="testapp/story_email.txt",
            obj=Story(headline="x"),
        )


def test_a_non_utf8_template_result_is_a_clear_error():
    with pytest.raises(TemplateProblem, match="cannot be encoded as UTF-8"):
        render_email(
            subject="Lone surrogate \udcff",
            text_template="testapp/story_email.txt",
            obj=Story(headline="x"),
        )


def test_job_goes_done_when_everything_is_sent(mailserver):
    job = job_for(["ann@example.com", "bob@example.com"])
    expand_pending_jobs()
    send_queued()

    out = command("process_mail_jobs")

    job.refresh_from_db()
    assert job.status == JobStatus.DONE
    assert job.finished_at is not None
    assert re.fullmatch(
        r"expanded 0 job\(s\): 0 message\(s\) queued, 0 skipped in \d+\.\d\ds "
        r"\(\d+/s\); 1 job\(s\) done\n",
        out,
    )


def test_process_mail_jobs_prints_one_summary_line():
    job_for([f"r{i}@example.com" for i in range(5)] + ["bad"])
    out = command("process_mail_jobs")
    assert re.fullmatch(
        r"expanded 1 job\(s\): 5 message\(s\) queued, 1 skipped in \d+\.\d\ds "
        r"\(\d+/s\); 0 job\(s\) done\n",
        out,
    )


def test_personalised_values_differ_per_recipient_and_are_escaped(mailserver):
    job_for(
        [
            {"email": "ann@example.com", "name": "Ann & Co"},
            {"email": "bob@example.com", "name": "<b>Bob</b>"},
        ]
    )
    expand_pending_jobs()
    send_queued()

    got = {a: r.message for a, r in by_recipient(mailserver.messages).items()}
    assert got["ann@example.com"]["Subject"] == "Headlines for Ann & Co"
    assert got["bob@example.com"]["Subject"] == "Headlines for <b>Bob</b>"
    ann_text = got["ann@example.com"].get_body(("plain",)).get_content()
    bob_html = got["bob@example.com"].get_body(("html",)).get_content()
    ann_text, bob_html = (t.replace("\r\n", "\n") for t in (ann_text, bob_html))
    assert ann_text == "Hello Ann & Co <ann@example.com>\n"
    assert bob_html == "<p>Hello &lt;b&gt;Bob&lt;/b&gt;</p>\n"


def test_cancelling_a_job_takes_its_pending_mail_out_of_the_queue(mailserver):
    job = job_for([f"r{i}@example.com" for i in range(10)])
    expand_pending_jobs()
    send_queued(max_messages=3)

    from mailer.jobs.services import cancel_jobs

    assert cancel_jobs(MessageJob.objects.all()) == (1, 7)
    assert send_queued().sent == 0
    assert mailserver.count == 3
    assert job_progress(job)["cancelled"] == 7
    assert MessageLog.objects.filter(result=LogResult.CANCELLED).count() == 7
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED


def test_retry_failed_puts_failed_job_mail_back(mailserver):
    mailserver.reject(["r1@example.com"], code=550, reply="5.7.1 Blocked")
    job = job_for(["r0@example.com", "r1@example.com"])
    expand_pending_jobs()
    send_queued()
    assert job_progress(job)["failed"] == 1

    from mailer.jobs.services import retry_failed

    mailserver.accept_all()
    assert retry_failed(MessageJob.objects.all()) == 1
    send_queued()
    assert sorted(r.rcpt_tos[0] for r in mailserver.messages) == [
        "r0@example.com",
        "r1@example.com",
    ]
    assert job_progress(job)["sent"] == 2


def test_job_admin_shows_progress_and_cancels(client, mailserver):
    admin = User.objects.create_superuser("boss", "boss@example.com", "pw")
    client.force_login(admin)
    story = Story.objects.create(headline="Bridge reopens")
    job = job_for(
        ["ann@example.com", "bob@example.com", "cat@example.com"],
        announced_object=story,
        created_by=admin,
    )
    expand_pending_jobs()
    mailserver.reject(["cat@example.com"], code=550, reply="5.7.1 Blocked")
    send_queued(max_messages=2)

    page = client.get("/admin/mailer/messagejob/").content.decode()
    assert "2 sent · 0 failed" in strip_tags(page)
    detail = client.get(f"/admin/mailer/messagejob/{job.pk}/change/").content.decode()
    assert "Bridge reopens" in detail and "boss" in detail

    response = client.post(
        "/admin/mailer/messagejob/",
        {"action": "cancel", "_selected_action": [job.pk], "post": "yes"},
    )
    assert response.status_code == 302
    assert job_progress(job)["cancelled"] == 1
    assert mailserver.count == 2


def test_mailer_status_shows_the_queue_and_jobs(mailserver):
    import mailer

    mailer.send_mail("Reset", "link", "a@example.com", ["x@example.com"], "high")
    job_for(["ann@example.com", "bob@example.com"])
    expand_pending_jobs()

    out = command("mailer_status")

    assert "Queue by priority and status:" in out
    assert re.search(r"high\s+queued\s+1\n", out)
    assert re.search(r"medium\s+queued\s+2\n", out)
    assert re.search(r"Oldest due message waiting: \d+s", out)
    assert "2/2 expanded, 0 sent, 0 deferred, 0 failed, 0 suppressed, 0 skipped" in out
    assert MessageStatus.QUEUED.label == "queued"


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("Reader [[mj:name]]", "[[mj:name]]"),
        ("[[mj?preferences_url]]yes[[/mj?preferences_url]]", "[[mj?preferences_url]]"),
    ],
)
def test_a_per_recipient_value_in_a_header_is_refused_naming_it(value, named):
    content = RenderedEmail(
        subject="Morning", body_text="Hi [[mj:name]]\n", headers={"X-Reader": value}
    )
    with pytest.raises(InvalidEmail) as refused:
        create_job(content=content, recipients=["ann@example.com"])
    assert str(refused.value).startswith(
        f"The header X-Reader holds a per-recipient value ({named}): "
        "a job's headers are the same for every reader"
    )
    assert not MessageJob.objects.exists()
