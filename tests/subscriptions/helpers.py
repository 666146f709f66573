"""Shared pieces of the subscriptions tests."""

from __future__ import annotations

import re

from mailer.jobs.expand import expand_pending_jobs
from mailer.sending.engine import send_queued
from mailer.subscriptions.models import MailingList


def make_lists() -> tuple[MailingList, MailingList]:
    daily = MailingList.objects.create(
        name="Daily headlines", slug="daily", list_id="daily-headlines"
    )
    breaking = MailingList.objects.create(
        name="Breaking news", slug="breaking", list_id="breaking-news"
    )
    return daily, breaking


def deliver() -> None:
    """Expand jobs and send everything queued, in this process, to the test
    SMTP server (the ``mailserver`` fixture)."""
    expand_pending_jobs()
    send_queued()


def link(message, kind: str) -> str:
    """The path of the first link to a ``/newsletters/<kind>/`` page in the
    text body."""
    body = message.get_body(("plain",)).get_content()
    found = re.search(
        rf"https://news\.example\.com(/newsletters/{kind}/[^\s/]+/)", body
    )
    assert found, body
    return found.group(1)
