"""Signup, confirmation and the abuse limits, through the real SMTP server."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from mailer.models import Message, Priority
from mailer.subscriptions import signals
from mailer.subscriptions.models import (
    ConsentWording,
    Source,
    Status,
    Subscription,
)

from .helpers import deliver, link, make_lists

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()
    yield
    cache.clear()


def signup(client, email="ann@example.com", lists=(), **extra):
    data = {"email": email, "name": "Ann", "lists": [m.pk for m in lists], **extra}
    return client.post("/newsletters/", data)


def test_signup_queues_a_high_priority_confirmation_and_the_link_activates(
    client, mailserver
):
    daily, breaking = make_lists()
    ConsentWording.objects.create(version="2026-1", text="Send me the news.")
    events = []

    def record(sender, subscription, how, **kw):
        events.append((subscription.mailing_list.slug, subscription.status, how))

    signals.subscribed.connect(record)
    signals.confirmed.connect(record)
    try:
        response = signup(client, "Ann@Example.com", [daily, breaking])
        assert response.status_code == 302
        assert response["Location"] == "/newsletters/thanks/"
        assert Message.objects.get().priority == Priority.HIGH
        subs = Subscription.objects.order_by("mailing_list__slug")
        assert [(s.address, s.status) for s in subs] == [
            ("ann@example.com", Status.PENDING),
            ("ann@example.com", Status.PENDING),
        ]
        assert subs[0].consent_wording.version == "2026-1"
        assert subs[0].consent_source == Source.FORM
        assert subs[0].ip_address == "127.0.0.1"

        deliver()
        [received] = mailserver.messages
        assert received.rcpt_tos == ["Ann@Example.com"]
        path = link(received.message, "confirm")

        # GET only shows a button: a mail scanner following the link confirms
        # nothing.
        page = client.get(path)
        assert b"Confirm subscription" in page.content
        assert not Subscription.objects.filter(status=Status.ACTIVE).exists()

        done = client.post(path)
        assert b"Subscription confirmed" in done.content
        assert b"Daily headlines" in done.content and b"Breaking news" in done.content
        assert set(Subscription.objects.values_list("status", flat=True)) == {
            Status.ACTIVE
        }
        assert all(s.confirmed_at for s in Subscription.objects.all())
    finally:
        signals.subscribed.disconnect(record)
        signals.confirmed.disconnect(record)
    assert sorted(events) == [
        ("breaking", Status.ACTIVE, Source.FORM),
        ("breaking", Status.PENDING, Source.FORM),
        ("daily", Status.ACTIVE, Source.FORM),
        ("daily", Status.PENDING, Source.FORM),
    ]


def test_a_list_without_double_opt_in_is_active_at_once(client):
    daily, _ = make_lists()
    daily.double_opt_in = False
    daily.save()
    signup(client, lists=[daily])
    assert Subscription.objects.get().status == Status.ACTIVE
    assert not Message.objects.exists()


def test_an_expired_confirmation_link_is_refused(client, settings, mailserver):
    daily, _ = make_lists()
    signup(client, lists=[daily])
    deliver()
    path = link(mailserver.messages[0].message, "confirm")
    settings.MAILER_SUBSCRIPTIONS_CONFIRM_DAYS = -1
    response = client.post(path)
    assert response.status_code == 404
    assert b"expired" in response.content
    assert Subscription.objects.get().status == Status.PENDING


def test_a_link_does_one_thing_only(client, mailserver):
    """A confirmation token posted to the unsubscribe or preference URL is
    refused: the salt is part of the signature."""
    daily, _ = make_lists()
    signup(client, lists=[daily])
    deliver()
    token = link(mailserver.messages[0].message, "confirm").split("/")[-2]
    for kind in ("unsubscribe", "preferences"):
        assert client.post(f"/newsletters/{kind}/{token}/").status_code == 404
    edited = token.replace(token[0], "x" if token[0] != "x" else "y", 1)
    assert client.post(f"/newsletters/confirm/{edited}/").status_code == 404
    assert Subscription.objects.get().status == Status.PENDING


def test_one_confirmation_per_address_and_list_within_the_window(client, mailserver):
    daily, breaking = make_lists()
    for _ in range(3):
        signup(client, lists=[daily])
    assert Message.objects.count() == 1
    # Another list is another confirmation, for that list only.
    signup(client, lists=[daily, breaking])
    assert Message.objects.count() == 2
    deliver()
    assert mailserver.count == 2
    second = mailserver.messages[1].message.get_body(("plain",)).get_content()
    assert "Breaking news" in second and "Daily headlines" not in second


def test_after_the_window_a_new_confirmation_is_sent(client, settings):
    daily, _ = make_lists()
    signup(client, lists=[daily])
    settings.MAILER_SUBSCRIPTIONS_RESEND_MINUTES = 0
    signup(client, lists=[daily])
    assert Message.objects.count() == 2


def test_the_honeypot_gets_the_usual_answer_and_nothing_happens(client):
    daily, _ = make_lists()
    response = signup(client, lists=[daily], website="http://spam.example")
    assert response.status_code == 302
    assert response["Location"] == "/newsletters/thanks/"
    assert not Subscription.objects.exists()
    assert not Message.objects.exists()


def test_known_and_unknown_addresses_get_the_same_answer(client):
    daily, _ = make_lists()
    daily.double_opt_in = False
    daily.save()
    first = signup(client, "known@example.com", [daily])
    known = signup(client, "known@example.com", [daily])
    unknown = signup(client, "new@example.com", [daily])
    assert first.status_code == known.status_code == unknown.status_code == 302
    assert known["Location"] == unknown["Location"]
    page_known = client.get(known["Location"]).content
    assert b"If the address can receive" in page_known


def test_the_per_ip_rate_limit_refuses_the_next_post(client, settings):
    daily, _ = make_lists()
    settings.MAILER_SUBSCRIPTIONS_RATE_LIMIT = (3, 3600)
    for n in range(3):
        assert signup(client, f"r{n}@example.com", [daily]).status_code == 302
    refused = signup(client, "r9@example.com", [daily])
    assert refused.status_code == 429
    assert b"Too many signups" in refused.content
    assert not Subscription.objects.filter(address="r9@example.com").exists()
    # Another address (another IP) is not affected.
    other = client.post(
        "/newsletters/",
        {"email": "o@example.com", "lists": [daily.pk]},
        REMOTE_ADDR="192.0.2.7",
    )
    assert other.status_code == 302


def test_form_errors_are_shown_next_to_labelled_fields(client):
    make_lists()
    page = client.get("/newsletters/")
    assert b'<label for="id_email">' in page.content
    assert b"csrfmiddlewaretoken" in page.content
    response = signup(client, "not an address", [])
    assert response.status_code == 200
    assert b'role="alert"' in response.content
    assert b"Choose at least one newsletter." in response.content
    assert not Subscription.objects.exists()


def test_a_link_to_the_form_can_tick_one_list_in_advance(client):
    import re

    daily, breaking = make_lists()
    page = client.get("/newsletters/?list=breaking").content.decode()

    def box(mailing_list):
        return re.search(rf'<input[^>]*value="{mailing_list.pk}"[^>]*>', page)[0]

    assert "checked" in box(breaking)
    assert "checked" not in box(daily)


def test_the_check_reports_missing_urls(settings):
    from mailer.subscriptions.checks import check_urls

    assert check_urls() == []
    settings.ROOT_URLCONF = "tests.testapp.no_subscription_urls"
    [error] = check_urls()
    assert error.id == "mailer_subscriptions.E001"
