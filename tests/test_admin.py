"""The admin over the queue, the log and the don't-send list, driven with
Django's test client as a superuser. No admin request sends mail."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.utils import timezone

import mailer
from mailer.jobs.expand import expand_pending_jobs
from mailer.jobs.services import RenderedEmail, create_job
from mailer.models import (
    DontSendEntry,
    LogResult,
    Message,
    MessageJob,
    MessageLog,
    MessageStatus,
)
from mailer.sending.claim import claim_batch
from mailer.sending.engine import send_queued

pytestmark = pytest.mark.django_db

MESSAGES = "/admin/mailer/message/"
LOGS = "/admin/mailer/messagelog/"


@pytest.fixture
def queue(db) -> dict[str, Message]:
    """One message in each state the admin must tell apart."""
    now = timezone.now()
    mailer.send_mail("Reset", "b", "site@example.com", ["ann@example.com"], "high")
    mailer.send_mail("Weekly", "b", "news@example.com", ["bob@example.com"])
    mailer.send_mail("Digest", "b", "news@example.com", ["carol@example.com"], "low")
    mailer.send_mail("Old news", "b", "news@example.com", ["dave@example.com"])
    mailer.send_mail("Held", "b", "news@example.com", ["erin@example.com"], "deferred")
    by_address = {m.to_address.split("@")[0]: m for m in Message.all_objects.all()}
    Message.all_objects.filter(pk=by_address["bob"].pk).update(
        status=MessageStatus.DEFERRED, attempts=2, due_at=now + timedelta(hours=1)
    )
    Message.all_objects.filter(pk=by_address["carol"].pk).update(
        status=MessageStatus.FAILED, attempts=1, due_at=None
    )
    Message.all_objects.filter(pk=by_address["dave"].pk).update(
        status=MessageStatus.SENT, attempts=1, due_at=None
    )
    return {name: Message.all_objects.get(pk=m.pk) for name, m in by_address.items()}


def shown(response) -> list[str]:
    """Who the changelist lists, by the local part of the address."""
    assert response.status_code == 200
    rows = response.context["cl"].result_list
    return sorted(row.to_address.split("@")[0] for row in rows)


def user_messages(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.mark.parametrize(
    "query, expected",
    [
        ("", ["ann", "bob", "carol", "dave", "erin"]),
        ("?priority__exact=1", ["ann"]),
        ("?priority__exact=3", ["carol"]),
        ("?status__exact=1", ["bob", "erin"]),
        ("?status__exact=3", ["carol"]),
        ("?due=now", ["ann"]),
        ("?due=later", ["bob", "erin"]),
        ("?due=now&priority__exact=2", []),
        ("?q=carol%40example", ["carol"]),
        ("?q=ERIN", ["erin"]),
        ("?q=Weekly", ["bob"]),
    ],
)
def test_message_changelist_filters_and_search(admin_client, queue, query, expected):
    assert shown(admin_client.get(MESSAGES + query)) == expected


def test_a_message_page_shows_its_details(admin_client, queue):
    response = admin_client.get(f"{MESSAGES}{queue['ann'].pk}/change/")
    assert response.status_code == 200
    assert b"ann@example.com" in response.content


def test_retry_now_makes_messages_due_and_sends_nothing_in_the_request(
    admin_client, queue, mailserver
):
    selected = [queue[name].pk for name in ("bob", "carol", "dave", "erin")]

    response = admin_client.post(
        MESSAGES, {"action": "retry_now", "_selected_action": selected}, follow=True
    )

    assert response.status_code == 200
    assert user_messages(response) == ["3 messages queued again."]
    assert mailserver.count == 0 and mailserver.connections == 0
    for name in ("bob", "carol", "erin"):
        message = Message.all_objects.get(pk=queue[name].pk)
        assert (message.status, message.attempts) == (MessageStatus.QUEUED, 0)
        assert message.due_at <= timezone.now()
    assert Message.all_objects.get(pk=queue["dave"].pk).status == MessageStatus.SENT

    assert send_queued().sent == 4  # ann was due already
    assert sorted(mailserver.counts) == [
        "ann@example.com",
        "bob@example.com",
        "carol@example.com",
        "erin@example.com",
    ]


def test_retry_now_leaves_a_message_a_worker_holds_alone(admin_client, queue):
    token, ids = claim_batch(1)
    assert ids == [queue["ann"].pk]

    admin_client.post(MESSAGES, {"action": "retry_now", "_selected_action": ids})

    held = Message.all_objects.get(pk=queue["ann"].pk)
    assert held.claim_token == token
    assert held.due_at > timezone.now()


def test_delete_action_removes_the_selected_messages(admin_client, queue):
    selected = [queue["carol"].pk, queue["dave"].pk]
    confirm = admin_client.post(
        MESSAGES, {"action": "delete_selected", "_selected_action": selected}
    )
    assert confirm.status_code == 200  # Django's confirmation page first
    assert Message.all_objects.count() == 5

    admin_client.post(
        MESSAGES,
        {"action": "delete_selected", "_selected_action": selected, "post": "yes"},
    )
    assert sorted(Message.all_objects.values_list("to_address", flat=True)) == [
        "ann@example.com",
        "bob@example.com",
        "erin@example.com",
    ]


@pytest.fixture
def log_entry(db) -> MessageLog:
    return MessageLog.objects.create(
        recipient="gone@example.com",
        subject="Weekly",
        result=LogResult.FAILED,
        smtp_code=550,
        reply="5.1.1 No such user",
        attempt=1,
    )


def test_the_log_can_be_listed_filtered_and_searched(admin_client, log_entry):
    MessageLog.objects.create(recipient="ann@example.com", result=LogResult.SENT)

    def recipients(query: str) -> list[str]:
        response = admin_client.get(LOGS + query)
        assert response.status_code == 200
        return sorted(row.recipient for row in response.context["cl"].result_list)

    assert recipients("") == ["ann@example.com", "gone@example.com"]
    assert recipients("?result__exact=3") == ["gone@example.com"]
    assert recipients("?smtp_code=550") == ["gone@example.com"]
    assert recipients("?q=ann%40") == ["ann@example.com"]


def test_the_log_is_read_only(admin_client, log_entry):
    change = f"{LOGS}{log_entry.pk}/change/"

    assert admin_client.get(LOGS + "add/").status_code == 403
    page = admin_client.get(change)
    assert page.status_code == 200
    assert b"5.1.1 No such user" in page.content
    assert b'name="_save"' not in page.content
    response = admin_client.post(
        change,
        {"recipient": "someone@example.com", "result": 1, "reply": "", "attempt": 1},
    )
    assert response.status_code == 403
    log_entry.refresh_from_db()
    assert log_entry.recipient == "gone@example.com"
    # Nor can history be deleted, one row or in bulk: purge_mail_log trims it.
    assert (
        admin_client.post(f"{LOGS}{log_entry.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    listing = admin_client.get(LOGS)
    assert listing.status_code == 200
    assert b"delete_selected" not in listing.content
    assert MessageLog.objects.filter(pk=log_entry.pk).exists()


def test_an_address_added_to_the_dont_send_list_is_stored_lower_cased(admin_client):
    now = timezone.localtime()
    response = admin_client.post(
        "/admin/mailer/dontsendentry/add/",
        {
            "address": "Ann@Example.COM",
            "reason": "manual",
            "note": "asked by phone",
            "created_at_0": now.strftime("%Y-%m-%d"),
            "created_at_1": now.strftime("%H:%M:%S"),
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    entry = DontSendEntry.objects.get()
    assert (entry.address, entry.reason) == ("ann@example.com", "manual")
    listed = admin_client.get("/admin/mailer/dontsendentry/?q=ANN")
    assert [e.address for e in listed.context["cl"].result_list] == ["ann@example.com"]


def test_job_actions_change_the_queue_and_send_nothing_in_the_request(
    admin_client, mailserver
):
    job = create_job(
        content=RenderedEmail(subject="Issue 7", body_text="News"),
        recipients=["a@example.com", "b@example.com", "c@example.com"],
        from_email="news@example.com",
    )
    expand_pending_jobs()
    changelist = admin_client.get("/admin/mailer/messagejob/")
    assert changelist.status_code == 200
    assert b"0 sent" in changelist.content

    confirmation = admin_client.post(
        "/admin/mailer/messagejob/",
        {"action": "cancel", "_selected_action": [job.pk]},
    )
    assert b"3 pending emails will not be sent." in confirmation.content
    assert MessageJob.objects.get().status == "queued"
    response = admin_client.post(
        "/admin/mailer/messagejob/",
        {"action": "cancel", "_selected_action": [job.pk], "post": "yes"},
        follow=True,
    )

    assert response.status_code == 200
    assert mailserver.count == 0
    assert MessageJob.objects.get().status == "cancelled"
    assert not Message.all_objects.pending().exists()
    assert send_queued().attempted == 0
