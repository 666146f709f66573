"""The "Send email update" action targets lists chosen on its confirmation
page (the ``mailer.actions.register_audience`` hook)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from mailer.models import MessageJob
from mailer.subscriptions import services
from mailer.subscriptions.models import ListMailing, Source
from tests.testapp.models import Reader, Story

from .helpers import deliver, make_lists

pytestmark = pytest.mark.django_db


@pytest.fixture
def editor_client(client):
    client.force_login(User.objects.create_superuser("ed", "ed@example.com", "pw"))
    return client


def act(client, story, **extra):
    return client.post(
        "/admin/testapp/story/",
        {"action": "send_email_update", "_selected_action": [story.pk], **extra},
    )


def test_the_editor_sees_the_lists_with_counts_and_sends_to_them(
    editor_client, mailserver
):
    daily, breaking = make_lists()
    services.subscribe("ann@example.com", [daily, breaking], source=Source.ADMIN)
    services.subscribe("bob@example.com", [breaking], source=Source.ADMIN)
    Reader.objects.create(email="reader@example.com")
    story = Story.objects.create(headline="Flood")

    page = act(editor_client, story).content.decode()
    assert 'name="mailer_lists"' in page
    assert 'Breaking news (<span class="mailer-list-count">2</span>' in page
    assert 'Daily headlines (<span class="mailer-list-count">1</span>' in page

    response = act(
        editor_client, story, post="yes", mailer_lists=[daily.pk, breaking.pk]
    )
    assert response.status_code == 302
    job = MessageJob.objects.get()
    assert job.recipient_count == 2
    assert job.list_id == "daily-headlines"
    assert set(ListMailing.objects.values_list("mailing_list", flat=True)) == {
        daily.pk,
        breaking.pk,
    }
    deliver()
    assert sorted(r.rcpt_tos[0] for r in mailserver.messages) == [
        "ann@example.com",
        "bob@example.com",
    ]
    unsub = mailserver.messages[0].message["List-Unsubscribe"]
    assert "/newsletters/unsubscribe/" in unsub


def test_without_lists_ticked_the_update_goes_to_its_own_recipients(
    editor_client,
):
    make_lists()
    Reader.objects.create(email="reader@example.com")
    story = Story.objects.create(headline="Flood")
    act(editor_client, story, post="yes")
    assert MessageJob.objects.get().recipients == [["reader@example.com", {"name": ""}]]
    assert not ListMailing.objects.exists()


def test_several_objects_sent_to_lists_each_reach_every_subscriber(editor_client):
    daily, _ = make_lists()
    services.subscribe("ann@example.com", [daily], source=Source.ADMIN)
    services.subscribe("bob@example.com", [daily], source=Source.ADMIN)
    stories = [Story.objects.create(headline=h) for h in ("Flood", "Fire")]
    editor_client.post(
        "/admin/testapp/story/",
        {
            "action": "send_email_update",
            "_selected_action": [s.pk for s in stories],
            "post": "yes",
            "mailer_lists": [daily.pk],
        },
    )
    assert sorted(MessageJob.objects.values_list("recipient_count", flat=True)) == [
        2,
        2,
    ]
    assert ListMailing.objects.count() == 2
