"""Unsubscribe tokens (mailer.unsubscribe): they cannot be forged or moved
to another address or job, a real one unsubscribes its own address only and
only on POST (RFC 8058 one-click), and the send loop's fast signer makes
exactly Django's token."""

from __future__ import annotations

import base64
import json
import re
import zlib

import pytest
from django.core import signing
from django.test import Client

from mailer.jobs.expand import expand_pending_jobs
from mailer.jobs.services import RenderedEmail, create_job
from mailer.models import DontSendEntry
from mailer.sending.engine import send_queued
from mailer.unsubscribe.tokens import SALT, make_token, read_token
from tests.conftest import by_recipient

pytestmark = pytest.mark.django_db


def url(token: str) -> str:
    return f"/mail/unsubscribe/{token}/"


def payload(value) -> str:
    """``value`` in the signer's payload encoding (compact JSON, base64)."""
    data = json.dumps(value, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def moved(token: str, value) -> str:
    """``token``'s signature on a different payload (a value, or a payload
    string as it is)."""
    _payload, signature = token.rsplit(":", 1)
    return f"{value if isinstance(value, str) else payload(value)}:{signature}"


def forged_tokens() -> dict[str, str]:
    ann = make_token("ann@example.com", 7)
    with_other_key = signing.Signer(key="not-our-secret-key", salt=SALT)
    return {
        "random": "eyJhIjoxfQ:0123456789abcdefghijklmnopq",
        "moved to bob": moved(ann, ["bob@example.com", 7]),
        "moved to another job": moved(ann, ["ann@example.com", 8]),
        "moved, compressed": moved(
            ann,
            "."
            + base64.urlsafe_b64encode(zlib.compress(b'["bob@example.com",7]'))
            .rstrip(b"=")
            .decode(),
        ),
        "other secret key": with_other_key.sign_object(["bob@example.com", 7]),
        "other salt (another signed value of the site)": signing.Signer().sign_object(
            ["bob@example.com", 7]
        ),
        "signature cut short": ann[:-3],
        "signature of another address": f"{ann.rsplit(':', 1)[0]}:"
        + make_token("bob@example.com", 7).rsplit(":", 1)[1],
        "no signature": payload(["bob@example.com", 7]),
        "empty payload": ":" + ann.rsplit(":", 1)[1],
    }


@pytest.mark.parametrize("name", list(forged_tokens()))
def test_a_forged_or_moved_unsubscribe_token_changes_nothing(name):
    token = forged_tokens()[name]
    client = Client()

    assert client.post(url(token)).status_code == 404
    assert client.get(url(token)).status_code == 404
    with pytest.raises(signing.BadSignature):
        read_token(token)
    assert not DontSendEntry.objects.exists()


def test_a_validly_signed_token_of_the_wrong_shape_is_refused():
    for value in ("bob@example.com", ["bob@example.com"], [1, 2], {"a": 1}):
        token = signing.Signer(salt=SALT).sign_object(value)
        assert Client().post(url(token)).status_code == 404
    assert not DontSendEntry.objects.exists()


def test_a_real_token_unsubscribes_its_own_address_only_and_only_on_post():
    token = make_token("Ann@Example.com", 7)
    client = Client(enforce_csrf_checks=True)  # RFC 8058: no CSRF token needed

    page = client.get(url(token))
    assert page.status_code == 200 and b"ann@example.com" in page.content
    assert not DontSendEntry.objects.exists()  # a link preview changes nothing

    assert client.post(url(token), {"List-Unsubscribe": "One-Click"}).status_code == 200
    assert list(DontSendEntry.objects.values_list("address", flat=True)) == [
        "ann@example.com"
    ]
    assert client.put(url(token)).status_code == 405

    # The link used again: nothing left to confirm.
    again = client.get(url(token)).content.decode()
    assert "You are already unsubscribed" in again and "<form" not in again


def test_each_email_carries_its_own_token_and_it_stops_only_that_reader(mailserver):
    create_job(
        content=RenderedEmail(subject="News", body_text="Bye: [[mj:unsubscribe_url]]"),
        recipients=["ann@example.com", "bob@example.com"],
    )
    expand_pending_jobs()
    send_queued()
    links = {}
    for address, received in by_recipient(mailserver.messages).items():
        header = received.message["List-Unsubscribe"]
        (link,) = re.findall(r"<(https://news\.example\.com/[^>]+)>", header)
        assert link in received.message.get_body(("plain",)).get_content()
        links[address] = link
    assert links["ann@example.com"] != links["bob@example.com"]
    ann_token = links["ann@example.com"].rstrip("/").rsplit("/", 1)[1]
    assert read_token(ann_token).address == "ann@example.com"

    assert Client().post(url(ann_token)).status_code == 200

    mailserver.reset()
    create_job(
        content=RenderedEmail(subject="More news", body_text="b"),
        recipients=["ann@example.com", "bob@example.com"],
    )
    expand_pending_jobs()
    send_queued()
    assert list(mailserver.counts) == ["bob@example.com"]


@pytest.mark.parametrize(
    "address, job_id",
    [("ann@example.com", 7), ("jörg@bücher.example", None), ("x" * 300, 2**40)],
)
def test_the_send_loops_token_signer_makes_djangos_token(address, job_id):
    # The send loop signs with a cached HMAC (TokenSigner); the view verifies
    # with Django's Signer: every token must be the very same string.
    from mailer.unsubscribe.tokens import TokenSigner

    fast = TokenSigner().sign_object([address, job_id])
    assert fast == signing.Signer(salt=SALT).sign_object([address, job_id])
    assert read_token(fast).address == address
