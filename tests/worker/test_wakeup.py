"""Waking workers: PostgreSQL NOTIFY from the queuing transaction, a one-query
poll elsewhere, and a LISTEN connection that comes back after being cut."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

import mailer
from mailer.jobs.services import RenderedEmail, create_job
from mailer.worker.wakeup import Listener, Poller, listens, work_waiting

on_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="LISTEN/NOTIFY is PostgreSQL's"
)
on_sqlite = pytest.mark.skipif(
    connection.vendor != "sqlite", reason="the poll is for other databases"
)


def queue_one(subject: str = "Reset your password") -> None:
    mailer.send_mail(
        subject, "Body", "news@example.com", ["reader@example.com"], priority="high"
    )


def new_job() -> None:
    create_job(
        content=RenderedEmail(subject="Issue 1", body_text="Hello"),
        recipients=["a@example.com", "b@example.com"],
    )


# -- the poll ------------------------------------------------------------------


@pytest.mark.django_db
def test_the_poll_finds_due_mail_and_confirmed_jobs_with_one_query():
    with CaptureQueriesContext(connection) as empty:
        assert work_waiting() is False
    queue_one()
    with CaptureQueriesContext(connection) as mail:
        assert work_waiting() is True
    assert len(empty) == len(mail) == 1


@pytest.mark.django_db
def test_the_poll_finds_a_confirmed_job():
    new_job()
    assert work_waiting() is True


@on_sqlite
@pytest.mark.django_db
def test_the_poll_searches_the_claim_index_instead_of_scanning_the_queue():
    with CaptureQueriesContext(connection) as queries:
        work_waiting()
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN QUERY PLAN " + queries[0]["sql"])
        plan = " | ".join(row[-1] for row in cursor.fetchall())
    assert "SEARCH mailer_message USING COVERING INDEX mailer_message_claim" in plan
    assert "mailer_job_to_expand" in plan
    assert "SCAN mailer_message " not in plan


@pytest.mark.django_db
def test_an_idle_poller_costs_one_query_per_poll():
    poller = Poller(0.01)
    with CaptureQueriesContext(connection) as queries:
        woken = poller.wait(0.1)
    assert woken is False
    assert poller.polls >= 1
    assert len(queries) == poller.polls


@pytest.mark.django_db
def test_a_poller_wakes_for_mail_already_due():
    queue_one()
    assert Poller(0.01).wait(30) is True


# -- LISTEN/NOTIFY -------------------------------------------------------------


@on_sqlite
@pytest.mark.django_db
def test_runmailer_pg_on_sqlite_says_it_needs_postgresql():
    assert not listens()
    with pytest.raises(CommandError, match="LISTEN/NOTIFY needs PostgreSQL"):
        call_command("runmailer_pg")


@pytest.fixture
def listener(transactional_db):
    listener = Listener()
    listener.connect()
    yield listener
    listener.close()


@on_postgres
def test_a_committed_email_wakes_a_listener(listener):
    queue_one()
    assert listener.wait(30) is True


@on_postgres
def test_a_confirmed_job_wakes_a_listener(listener):
    new_job()
    assert listener.wait(30) is True


@on_postgres
def test_a_rolled_back_email_wakes_nobody(listener):
    with pytest.raises(RuntimeError), transaction.atomic():
        queue_one("Never sent")
        raise RuntimeError("the view failed")
    assert listener.wait(0.5) is False


@on_postgres
def test_mail_wakes_listeners_only_when_its_transaction_commits(listener):
    with transaction.atomic():
        queue_one()
        assert listener.wait(0.3) is False  # not yet committed
    assert listener.wait(30) is True


@on_postgres
def test_many_emails_in_one_transaction_send_one_tiny_notification(listener):
    with transaction.atomic():
        for i in range(20):
            mailer.send_mail("Hi", "Body", "news@example.com", [f"r{i}@example.com"])
    notes = list(listener.connection.notifies(timeout=2))
    assert [(n.channel, n.payload) for n in notes] == [("mailer", "send")]


@on_postgres
def test_a_listener_whose_connection_is_cut_listens_again(listener):
    first = listener.pid
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [first])
    # The cut is noticed while waiting; the listener reconnects and reports
    # a wake-up, so the worker drains whatever was committed meanwhile.
    assert listener.wait(30) is True
    assert listener.pid != first
    queue_one()
    assert listener.wait(30) is True


@on_postgres
def test_an_idle_listener_asks_the_database_nothing(listener):
    def last_statement_started():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT query_start FROM pg_stat_activity WHERE pid = %s",
                [listener.pid],
            )
            return cursor.fetchone()[0]

    before = last_statement_started()
    with CaptureQueriesContext(connection) as queries:
        assert listener.wait(0.3) is False
    assert len(queries) == 0
    # Its own connection ran no statement either since the LISTEN.
    assert last_statement_started() == before
