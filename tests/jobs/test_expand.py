"""Expansion's one-statement chunk insert (JSON turned back into rows by the
database) stores exactly what the ORM would, on SQLite and PostgreSQL, and
the recipient snapshot's fast paths keep every recipient shape."""

from __future__ import annotations

from collections import UserDict

import pytest
from django.utils import timezone

from mailer.jobs.expand import MessageInserter, expand_pending_jobs
from mailer.jobs.services import RenderedEmail, create_job, snapshot_recipients
from mailer.models import Message, MessageStatus

pytestmark = pytest.mark.django_db

CONTENT = RenderedEmail(subject="Hello [[mj:name]]", body_text="Hi [[mj:name]]\n")


def test_a_chunk_stores_addresses_contexts_and_shared_values_as_the_orm_would():
    recipients = [
        {"email": "zoe@example.com", "name": "Zoë 😀", "quote": 'say "hi"\n'},
        "plain@example.com",
        ("ann@bücher.example", {"nested": {"list": [1, 2.5, None, True]}}),
        {"email": "o'brien+tag@example.com", "name": "O'Brien \\ back"},
    ]
    job = create_job(content=CONTENT, recipients=recipients, priority="high")

    result = expand_pending_jobs()

    assert (result.queued, result.skipped) == (4, 0)
    rows = list(
        Message.all_objects.order_by("id").values_list(
            "to_address", "context", "job_id", "priority", "status", "attempts"
        )
    )
    # In snapshot order; no context is SQL NULL, as the ORM stores None.
    assert rows == [
        ("zoe@example.com", {"name": "Zoë 😀", "quote": 'say "hi"\n'}, job.pk)
        + (job.priority, MessageStatus.QUEUED, 0),
        ("plain@example.com", None, job.pk, job.priority, MessageStatus.QUEUED, 0),
        ("ann@bücher.example", {"nested": {"list": [1, 2.5, None, True]}}, job.pk)
        + (job.priority, MessageStatus.QUEUED, 0),
        ("o'brien+tag@example.com", {"name": "O'Brien \\ back"}, job.pk)
        + (job.priority, MessageStatus.QUEUED, 0),
    ]
    assert Message.all_objects.filter(job=job, context__isnull=True).count() == 1
    message = Message.all_objects.get(to_address="zoe@example.com")
    assert message.due_at is not None and message.created_at is not None
    assert (message.envelope_from, message.subject, message.message_id) == (
        "",
        "",
        None,
    )


def test_a_recipient_already_queued_for_the_job_is_skipped_not_an_error():
    job = create_job(content=CONTENT, recipients=["x@example.com"])
    inserter = MessageInserter()
    now = timezone.now()
    inserter.insert(job, [("a@example.com", None), ("b@example.com", None)], now)

    # The unique (job, address) constraint is the backstop: a second insert
    # of the same rows, plus a new one, adds only the new one.
    inserter.insert(job, [("a@example.com", {"n": 1}), ("c@example.com", None)], now)

    assert sorted(Message.all_objects.values_list("to_address", "context")) == [
        ("a@example.com", None),
        ("b@example.com", None),
        ("c@example.com", None),
    ]


def test_snapshot_takes_every_recipient_shape():
    class Address(str):
        pass

    snapshot = snapshot_recipients(
        [
            Address(" sub@example.com "),
            UserDict({"email": "map@example.com", "name": "Map"}),
            {"email": "dict@example.com"},
            ("pair@example.com", {"name": "Pair"}),
            ["nocontext@example.com", None],
            {"email": "DICT@example.com", "name": "duplicate"},
            {"name": "no address"},
        ]
    )

    assert snapshot == [
        "sub@example.com",
        ["map@example.com", {"name": "Map"}],
        "dict@example.com",
        ["pair@example.com", {"name": "Pair"}],
        "nocontext@example.com",
    ]
    assert all(type(entry) is str for entry in snapshot if not isinstance(entry, list))
