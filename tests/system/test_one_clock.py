"""One clock: the database's. Claims, leases, renewals, releases and due
times are computed and compared in SQL with the database's now(), so workers
whose clocks disagree still agree on who owns a message."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

import mailer
from mailer.dbclock import DbNow
from mailer.jobs.expand import expand_pending_jobs
from mailer.jobs.services import RenderedEmail, create_job
from mailer.models import Message, MessageStatus
from mailer.sending.claim import claim_batch, release, renew
from mailer.sending.engine import retry_deferred, send_queued
from tests import clock
from tests.conftest import run_command
from tests.faultlib import (
    addresses,
    check_ok,
    fill_job,
    report,
    start,
    summary,
)

pytestmark = pytest.mark.django_db


def db_now():
    return Message.all_objects.annotate(now=DbNow()).values_list("now", flat=True)[0]


@pytest.fixture
def skewed(monkeypatch):
    """Run this process's clock ``seconds`` off, undone after the test."""
    from django.utils import timezone as tz

    def skew(seconds: float) -> None:
        monkeypatch.setattr(tz, "now", tz.now)
        monkeypatch.setattr("time.time", __import__("time").time)
        clock.shift(seconds)

    return skew


def test_a_worker_an_hour_ahead_does_not_take_a_live_claim(mailserver, skewed):
    fill_job(addresses(3, "ahead"))
    token, ids = claim_batch(1)  # a worker with a correct clock holds one

    skewed(3600)
    result = send_queued()

    assert result.sent == 2
    held = Message.all_objects.get(pk=ids[0])
    assert (held.status, held.claim_token) == (MessageStatus.QUEUED, token)
    assert set(mailserver.counts.values()) == {1}


def test_a_worker_an_hour_behind_sets_leases_by_the_database(skewed):
    fill_job(addresses(2, "behind"))
    skewed(-3600)

    token, ids = claim_batch(2)

    assert len(ids) == 2
    lease_ends = set(Message.all_objects.values_list("due_at", flat=True))
    now = db_now()
    for end in lease_ends:
        # A full lease from the database's now, not one that ended an hour
        # ago on this worker's clock.
        assert timedelta(seconds=40) < end - now <= timedelta(seconds=300)
    # Renewing and releasing are on the database's clock too.
    assert renew(token, ids) == set(ids)
    assert release(token, ids) == 2
    assert Message.all_objects.due().count() == 2


def test_a_deferral_is_due_after_its_backoff_on_the_database_clock(
    mailserver, settings, skewed
):
    settings.MAILER_RETRY_BACKOFF_SECONDS = 120
    fill_job(addresses(1, "later"))
    mailserver.defer(["later00000@example.com"], code=451, times=1)
    skewed(-7200)  # two hours behind: a Python-clock due time would be past

    assert send_queued().deferred == 1
    wait = Message.all_objects.get().due_at - db_now()
    assert timedelta(seconds=110) < wait <= timedelta(seconds=120)
    assert send_queued().attempted == 0
    assert retry_deferred() == 1
    assert send_queued().sent == 1


@override_settings(USE_TZ=False, TIME_ZONE="America/Chicago")
def test_with_use_tz_false_leases_are_in_local_time(mailserver):
    """Django stores naive local times then. SQLite's 'now' is UTC: Django's
    own Now() would be 6 hours off in Chicago. (PostgreSQL compares
    timestamptz values, whatever the session's time zone.)"""
    fill_job(addresses(2, "naive"))
    assert timezone.now().tzinfo is None

    _token, ids = claim_batch(1)

    held = Message.all_objects.get(pk=ids[0])
    lease = held.due_at - timezone.now()
    assert timedelta(seconds=250) < lease <= timedelta(seconds=301)
    assert send_queued().sent == 1  # the other one; the claimed one waits
    assert Message.all_objects.get(pk=ids[0]).status == MessageStatus.QUEUED


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_workers_60_s_apart_drain_2000_with_no_duplicates(worker_env, smtp_server):
    """One worker's clock runs 60 s ahead, the other's 60 s behind, leases
    of 45 s (the default) and a slow relay. Before: 33 duplicates at a skew of
    8 s against a 6 s lease."""
    recipients = addresses(2000, "skew")
    fill_job(recipients)
    smtp_server.delay_replies(0.001, greeting=False)
    env = {**worker_env, "MAILER_TEST_LEASE_SECONDS": "45"}
    workers = [
        start(
            {**env, "MAILER_TEST_CLOCK_OFFSET": offset},
            "send_mail",
            "--batch-size",
            "50",
        )
        for offset in ("60", "-60")
    ]
    outputs = [w.communicate(timeout=600) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    rest = check_ok(run_command(env, "send_mail"))

    sent = [summary(out)["sent"] for out, _err in outputs]
    row = report(
        "2 workers, clocks +60 s and -60 s, 2,000 messages",
        recipients,
        smtp_server.counts,
        per_worker=sent,
    )
    assert (row["delivered"], row["duplicates"], row["lost"]) == (2000, 0, 0)
    assert min(sent) > 0
    assert rest["sent"] == 0
    assert not Message.all_objects.exclude(status=MessageStatus.SENT).exists()


def test_mail_queued_on_a_host_an_hour_ahead_is_due_at_once(mailserver, skewed):
    """The web host's clock does not hold its mail back: "due now" is the
    database's now, for single mail (one or many) and for a job's mail."""
    skewed(3600)
    mailer.send_mail("Reset", "link", "site@example.com", ["one@example.com"])
    mailer.send_mass_mail(
        [("Welcome", "hi", "site@example.com", [f"m{n}@example.com"]) for n in (1, 2)]
    )
    create_job(
        content=RenderedEmail(subject="The Daily", body_text="Hello [[mj:email]]\n"),
        recipients=addresses(2, "job"),
    )
    assert expand_pending_jobs().queued == 2

    due = Message.all_objects.filter(due_at__lte=DbNow())
    assert due.count() == 5
    assert send_queued().sent == 5
