"""Sending to lists, per-list one-click unsubscribe, the preference centre."""

from __future__ import annotations

import pytest

from mailer.exceptions import InvalidEmail
from mailer.jobs.services import RenderedEmail
from mailer.models import DontSendEntry, MessageJob
from mailer.subscriptions import services, signals
from mailer.subscriptions.audience import audience_count, send_to_lists
from mailer.subscriptions.models import (
    Leaving,
    ListMailing,
    Source,
    Status,
    Subscription,
)
from tests.conftest import by_recipient

from .helpers import deliver, link, make_lists

pytestmark = pytest.mark.django_db

CONTENT = RenderedEmail(
    subject="Today's news",
    body_text=(
        "Hello [[mj:name]]\n"
        "Leave: [[mj:unsubscribe_url]]\n"
        "Preferences: [[mj:preferences_url]]\n"
    ),
)


def active(address, *lists, name=""):
    services.subscribe(address, lists, name=name, source=Source.ADMIN)


def received_by(mailserver):
    """The newsletters received, by reader (confirmation emails left out)."""
    news = [r for r in mailserver.messages if r.message["Subject"] == "Today's news"]
    return {address: r.message for address, r in by_recipient(news).items()}


def test_one_email_per_reader_across_lists_each_with_its_own_links(mailserver):
    daily, breaking = make_lists()
    active("ann@example.com", daily, breaking, name="Ann")
    active("ANN@example.com", daily)  # the same reader
    active("bob@example.com", breaking, name="Bob")
    services.subscribe("pending@example.com", [daily])  # not confirmed
    assert audience_count([daily, breaking]) == 2

    job = send_to_lists(CONTENT, [daily, breaking])
    assert job.list_id == "daily-headlines"
    assert set(ListMailing.objects.values_list("job", "mailing_list")) == {
        (job.pk, daily.pk),
        (job.pk, breaking.pk),
    }
    deliver()
    got = received_by(mailserver)
    assert sorted(got) == ["ann@example.com", "bob@example.com"]
    ann = got["ann@example.com"]
    assert ann["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert ann["List-Id"] == "<daily-headlines.news.example.com>"
    header_url = ann["List-Unsubscribe"].split(">")[0].lstrip("<")
    assert header_url.startswith("https://news.example.com/newsletters/unsubscribe/")
    assert header_url.endswith(link(ann, "unsubscribe"))
    assert link(ann, "preferences")
    assert link(ann, "unsubscribe") != link(got["bob@example.com"], "unsubscribe")


def test_one_click_post_leaves_that_list_and_the_reader_keeps_the_other(
    client, mailserver
):
    daily, breaking = make_lists()
    active("ann@example.com", daily, breaking)
    send_to_lists(CONTENT, [breaking])
    deliver()
    path = link(mailserver.messages[0].message, "unsubscribe")

    # GET shows a confirmation page and changes nothing.
    page = client.get(path)
    assert b"Breaking news" in page.content and b"Daily headlines" not in page.content
    assert Subscription.objects.filter(status=Status.ACTIVE).count() == 2

    # RFC 8058: a POST with no cookie and no CSRF token.
    from django.test import Client

    response = Client(enforce_csrf_checks=True).post(
        path, {"List-Unsubscribe": "One-Click"}
    )
    assert response.status_code == 200
    sub = Subscription.objects.get(mailing_list=breaking)
    assert (sub.status, sub.unsubscribed_how) == (
        Status.UNSUBSCRIBED,
        Leaving.LIST_LINK,
    )
    assert not DontSendEntry.objects.exists()

    before = mailserver.count
    send_to_lists(CONTENT, [daily])
    deliver()
    assert mailserver.count == before + 1
    assert mailserver.messages[-1].rcpt_tos == ["ann@example.com"]
    with pytest.raises(InvalidEmail):
        send_to_lists(CONTENT, [breaking])  # nobody left on it


def test_the_preference_centre_changes_lists_and_name(client, mailserver):
    daily, breaking = make_lists()
    active("ann@example.com", daily, name="Ann")
    send_to_lists(CONTENT, [daily])
    deliver()
    path = link(mailserver.messages[0].message, "preferences")
    page = client.get(path)
    assert b'value="Ann"' in page.content

    response = client.post(path, {"name": "Ann Lee", "lists": [breaking.pk]})
    assert response.status_code == 302
    saved = client.get(response["Location"])
    assert b"Breaking news" in saved.content
    assert dict(Subscription.objects.values_list("mailing_list__slug", "status")) == {
        "daily": Status.UNSUBSCRIBED,
        "breaking": Status.ACTIVE,
    }
    assert set(Subscription.objects.values_list("name", flat=True)) == {"Ann Lee"}
    assert (
        Subscription.objects.get(mailing_list=daily).unsubscribed_how
        == Leaving.PREFERENCES
    )


def test_leave_all_uses_the_global_dont_send_list(client, mailserver):
    daily, breaking = make_lists()
    active("ann@example.com", daily, breaking)
    left = []
    signals.unsubscribed.connect(
        handler := lambda sender, subscription, how, **kw: left.append(how)
    )
    try:
        path = services.preferences_url("ann@example.com").removeprefix(
            "https://news.example.com"
        )
        page = client.post(path, {"leave_all": "1"})
    finally:
        signals.unsubscribed.disconnect(handler)
    assert b"You left all newsletters" in page.content
    assert left == [Leaving.LEAVE_ALL, Leaving.LEAVE_ALL]
    assert DontSendEntry.objects.filter(address="ann@example.com").exists()
    assert not Subscription.objects.filter(status=Status.ACTIVE).exists()


def test_the_preference_link_does_not_work_for_another_address(client):
    daily, _ = make_lists()
    active("ann@example.com", daily)
    token = services.preferences_url("ann@example.com").split("/")[-2]
    value, signature = token.rsplit(":", 1)
    forged = (
        services.preferences_url("eve@example.com").split("/")[-2].rsplit(":", 1)[0]
    )
    response = client.post(
        f"/newsletters/preferences/{forged}:{signature}/", {"leave_all": "1"}
    )
    assert response.status_code == 404
    assert Subscription.objects.get().status == Status.ACTIVE
    assert MessageJob.objects.count() == 0


def test_the_preference_centre_keeps_private_lists_unless_left_and_cannot_join_one(
    client,
):
    daily, breaking = make_lists()
    staff = type(daily).objects.create(
        name="Staff notes", slug="staff", list_id="staff", public=False
    )
    secret = type(daily).objects.create(
        name="Secret", slug="secret", list_id="secret", public=False
    )
    active("ann@example.com", daily, staff)
    path = services.preferences_url("ann@example.com").removeprefix(
        "https://news.example.com"
    )
    page = client.get(path).content.decode()
    assert "Staff notes" in page and "Secret" not in page
    # Saving with the private list still ticked keeps it.
    client.post(path, {"name": "", "lists": [daily.pk, staff.pk]})
    assert Subscription.objects.get(mailing_list=staff).status == Status.ACTIVE
    # A crafted post cannot join a private list the reader is not on.
    response = client.post(path, {"name": "", "lists": [daily.pk, secret.pk]})
    assert response.status_code == 200
    assert not Subscription.objects.filter(mailing_list=secret).exists()
    # Unticking it leaves it.
    client.post(path, {"name": "", "lists": [daily.pk]})
    assert Subscription.objects.get(mailing_list=staff).status == (Status.UNSUBSCRIBED)
    assert Subscription.objects.get(mailing_list=daily).status == Status.ACTIVE


def test_a_bounced_or_complaining_subscriber_is_not_sent_list_mail(mailserver):
    """Bounces and complaints use the core's global don't-send list; the
    subscription itself stays as it was."""
    from mailer.models import SuppressionReason

    daily, _ = make_lists()
    active("ann@example.com", daily)
    active("bob@example.com", daily)
    DontSendEntry.objects.create(
        address="bob@example.com", reason=SuppressionReason.BOUNCED
    )
    send_to_lists(CONTENT, [daily])
    deliver()
    assert sorted(received_by(mailserver)) == ["ann@example.com"]


def test_the_core_global_unsubscribe_link_leaves_every_list(client):
    from mailer.unsubscribe.tokens import make_token

    daily, breaking = make_lists()
    active("ann@example.com", daily, breaking)
    response = client.post(f"/mail/unsubscribe/{make_token('ann@example.com')}/")
    assert response.status_code == 200
    assert set(Subscription.objects.values_list("status", "unsubscribed_how")) == {
        (Status.UNSUBSCRIBED, Leaving.LEAVE_ALL)
    }
    assert DontSendEntry.objects.filter(address="ann@example.com").exists()
