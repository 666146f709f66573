"""Deleting jobs: a handful of statements whatever the number of readers
(``mailer.jobs.services.delete_jobs``, used by the admin's delete)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from mailer.jobs.expand import expand_pending_jobs
from mailer.jobs.services import RenderedEmail, create_job, delete_jobs
from mailer.models import LogResult, Message, MessageJob, MessageLog

pytestmark = pytest.mark.django_db


def job_of(readers: int, tag: str) -> MessageJob:
    job = create_job(
        content=RenderedEmail(subject=f"{tag} [[mj:name]]", body_text="Hello"),
        recipients=[f"{tag}{i}@example.com" for i in range(readers)],
        from_email="news@example.com",
    )
    expand_pending_jobs()
    return job


def statements_to_delete(readers: int) -> int:
    job = job_of(readers, f"n{readers}-")
    with CaptureQueriesContext(connection) as queries:
        assert delete_jobs(MessageJob.objects.filter(pk=job.pk)) == readers
    return len(queries)


def test_the_statements_do_not_grow_with_the_readers():
    assert statements_to_delete(5) == statements_to_delete(400)


def test_messages_go_logs_stay_and_other_jobs_are_untouched():
    doomed, kept = job_of(3, "d"), job_of(2, "k")
    first = Message.all_objects.filter(job=doomed).first()
    MessageLog.objects.create(
        message_pk=first.pk,
        job=doomed,
        recipient="d0@example.com",
        result=LogResult.FAILED,
    )
    # A retry elsewhere that points at a doomed message keeps its own row.
    survivor = Message.all_objects.filter(job=kept).first()
    survivor.retry_of = first
    survivor.save(update_fields=["retry_of"])

    assert delete_jobs(MessageJob.objects.filter(pk=doomed.pk)) == 3

    assert list(MessageJob.objects.values_list("pk", flat=True)) == [kept.pk]
    assert Message.all_objects.filter(job=kept).count() == 2
    assert not Message.all_objects.filter(job_id=doomed.pk).exists()
    survivor.refresh_from_db()
    assert survivor.retry_of_id is None
    log = MessageLog.objects.get(recipient="d0@example.com")
    assert log.job_id is None and log.message_pk == first.pk


def test_an_empty_selection_deletes_nothing():
    job = job_of(2, "e")
    assert delete_jobs(MessageJob.objects.none()) == 0
    assert Message.all_objects.filter(job=job).count() == 2
