"""Provider limits: global caps shared by every worker (counted in the
database), pacing per recipient domain, and a full window deferring mail,
never failing it. (Three ``send_mail`` processes sharing a cap:
tests/system/test_quotas_across_workers.py.)"""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta

import pytest

from mailer.dbclock import database_now_utc as database_now
from mailer.dbclock import for_field
from mailer.models import LogResult, Message, MessageLog, MessageStatus, RateWindow
from mailer.sending import quotas
from mailer.sending.engine import send_queued
from tests.faultlib import addresses, fill_single

pytestmark = pytest.mark.django_db


def _clear_of_a_minute_boundary() -> None:
    """Per-domain windows are minutes of the database's clock; a test that
    fills one must not straddle two. Waits (at most 12 s) for a fresh minute
    when fewer than 12 s of this one are left."""
    now = database_now()
    if now.second >= 48:
        time.sleep(60.2 - now.second - now.microsecond / 1e6)


def test_window_starts_are_aligned_on_the_epoch_in_utc():
    now = database_now()
    second = quotas.window_start(now, 1)
    day = quotas.window_start(now, 86400)
    assert second <= now < second + timedelta(seconds=1)
    assert second.microsecond == 0
    assert (day.hour, day.minute, day.second) == (0, 0, 0)
    assert day <= now < day + timedelta(days=1)


def test_the_database_clock_is_read_in_utc():
    now = database_now()
    assert now.utcoffset() == timedelta(0)
    assert abs(now.timestamp() - time.time()) < 60


def test_a_daily_cap_admits_exactly_its_count_then_names_the_next_window(settings):
    settings.MAILER_RATE_LIMITS = {"day": 3}
    results = [quotas.acquire([f"r{i}@example.com"]) for i in range(5)]

    assert results[:3] == [None, None, None]
    wait = results[3]
    assert wait is not None and wait.scope == "global:day" and wait.is_global
    assert (wait.until.hour, wait.until.minute) == (0, 0)
    assert 0 < wait.seconds <= 86400
    assert RateWindow.objects.get(scope="global:day").count == 3


def test_slots_are_all_or_none_across_windows(settings):
    settings.MAILER_RATE_LIMITS = {"hour": 5, "day": 2}
    assert quotas.acquire(["a@example.com"]) is None
    assert quotas.acquire(["b@example.com"]) is None
    wait = quotas.acquire(["c@example.com"])

    assert wait.scope == "global:day"
    # The hour's slot taken before the day was found full is given back.
    assert RateWindow.objects.get(scope="global:hour").count == 2


def test_global_caps_count_recipients_and_a_large_email_goes_alone(settings):
    settings.MAILER_RATE_LIMITS = {"day": 5}
    many = [f"r{i}@example.com" for i in range(7)]
    assert quotas.acquire(many) is None  # an empty window takes it whole
    assert quotas.acquire(["late@example.com"]).scope == "global:day"
    assert RateWindow.objects.get(scope="global:day").count == 7


def test_domain_pacing_has_a_default_and_overrides(settings):
    settings.MAILER_DOMAIN_RATE = {"default": 3, "slow.example": 1}
    _clear_of_a_minute_boundary()
    assert quotas.acquire(["a@Slow.Example"]) is None
    assert quotas.acquire(["b@slow.example"]).scope == "domain:slow.example"
    for i in range(3):
        assert quotas.acquire([f"r{i}@fast.example"]) is None
    wait = quotas.acquire(["r9@fast.example"])
    assert wait.scope == "domain:fast.example" and not wait.is_global
    assert wait.until.second == 0 and 0 < wait.seconds <= 60


def test_no_limit_configured_costs_no_query(settings, django_assert_num_queries):
    settings.MAILER_RATE_LIMITS = {}
    settings.MAILER_DOMAIN_RATE = {}
    with django_assert_num_queries(0):
        assert quotas.acquire(["a@example.com"]) is None


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("MAILER_RATE_LIMITS", {"week": 5}, "unknown unit 'week'"),
        ("MAILER_RATE_LIMITS", {"second": 0}, "must be >= 1"),
        ("MAILER_DOMAIN_RATE", {"default": 0}, "must be >= 1"),
    ],
)
def test_a_rate_setting_that_cannot_work_is_a_clear_error(
    settings, name, value, message
):
    setattr(settings, name, value)
    with pytest.raises(quotas.ConfigurationError, match=message):
        quotas.acquire(["a@example.com"])


# -- through the engine -----------------------------------------------------------


def test_a_full_hourly_cap_defers_the_rest_without_burning_attempts(
    settings, mailserver
):
    settings.MAILER_RATE_LIMITS = {"hour": 4}
    fill_single(addresses(10, "cap"))

    result = send_queued()

    assert (result.sent, result.failed, result.deferred) == (4, 0, 0)
    assert result.stop_reason.startswith("rate limit (global:hour)")
    assert mailserver.count == 4
    waiting = Message.all_objects.exclude(status=MessageStatus.SENT)
    assert waiting.count() == 6
    assert set(waiting.values_list("status", "attempts", "claim_token")) == {
        (MessageStatus.QUEUED, 0, None)
    }
    until = for_field(quotas.window_start(database_now(), 3600) + timedelta(hours=1))
    assert set(waiting.values_list("due_at", flat=True)) == {until}
    assert not MessageLog.objects.exclude(result=LogResult.SENT).exists()
    # The next run finds nothing due: no spinning on a full window.
    again = send_queued()
    assert (again.sent, again.batches, mailserver.count) == (0, 0, 4)


def test_a_paced_domain_waits_while_other_domains_go(settings, mailserver):
    settings.MAILER_DOMAIN_RATE = {"default": 100, "slow.example": 2}
    _clear_of_a_minute_boundary()
    slow = [f"s{i}@slow.example" for i in range(5)]
    fast = [f"f{i}@fast.example" for i in range(3)]
    fill_single(slow + fast)

    result = send_queued()

    assert (result.sent, result.paced, result.failed, result.deferred) == (5, 3, 0, 0)
    assert "paced 3 (domain rate)" in result.summary()
    received = Counter(m.rcpt_tos[0].split("@")[1] for m in mailserver.messages)
    assert received == {"slow.example": 2, "fast.example": 3}
    held = Message.all_objects.exclude(status=MessageStatus.SENT)
    assert sorted(held.values_list("to_address", flat=True)) == slow[2:]
    assert set(held.values_list("attempts", "status")) == {(0, MessageStatus.QUEUED)}
    due = sorted(held.values_list("due_at", flat=True))
    next_minute = quotas.window_start(database_now(), 60) + timedelta(minutes=1)
    # Two in the next minute (the cap), the third in the one after.
    after = next_minute + timedelta(minutes=1)
    assert due == [for_field(next_minute), for_field(next_minute), for_field(after)]


def test_a_per_second_cap_makes_the_worker_wait_and_send_everything(
    settings, mailserver
):
    settings.MAILER_RATE_LIMITS = {"second": 4}
    fill_single(addresses(10, "sec"))

    result = send_queued()

    assert (result.sent, result.failed) == (10, 0)
    counts = list(
        RateWindow.objects.filter(scope="global:second").values_list("count", flat=True)
    )
    assert sum(counts) == 10 and max(counts) <= 4 and len(counts) >= 3


def test_mail_deferred_for_a_full_domain_is_spread_over_later_windows(
    settings, mailserver
):
    settings.MAILER_DOMAIN_RATE = {"default": 2}
    _clear_of_a_minute_boundary()
    fill_single([f"r{i}@gmail.example" for i in range(9)])

    result = send_queued()

    assert (result.sent, result.paced) == (2, 7)
    due = sorted(
        Message.all_objects.exclude(status=MessageStatus.SENT).values_list(
            "due_at", flat=True
        )
    )
    first = due[0]
    assert first.second == 0
    minutes = [round((d - first).total_seconds() / 60) for d in due]
    # Two a minute, as the cap allows, instead of all seven at once.
    assert minutes == [0, 0, 1, 1, 2, 2, 3]


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"MAILER_RATE_LIMITS": {"second": 14, "day": 50000}}, []),
        ({"MAILER_RATE_LIMITS": {"week": 5}}, ["mailer.E020"]),
        ({"MAILER_DOMAIN_RATE": {"default": 0}}, ["mailer.E020"]),
        ({"MAILER_DOMAIN_RATE": {"gmail.com": "300"}}, ["mailer.E020"]),
        ({"MAILER_SSL_CA_FILE": "/nonexistent/ca.pem"}, ["mailer.E021"]),
    ],
)
def test_the_system_check_names_relay_settings_that_cannot_work(
    settings, overrides, expected
):
    from mailer.checks import check_relay_settings

    for name, value in overrides.items():
        setattr(settings, name, value)
    assert [error.id for error in check_relay_settings()] == expected


@pytest.mark.django_db(transaction=True)  # the threads see committed rows only
def test_four_connections_of_one_run_share_a_global_cap(settings, mailserver):
    """The pool runs one Sender, and one Gate, per connection; the cap is
    counted in the database, so together they send exactly the cap."""
    settings.MAILER_RATE_LIMITS = {"hour": 30}
    queued = fill_single(addresses(50, "pool"))

    result = send_queued(connections=4, batch_size=8)

    assert (result.sent, result.deferred, result.failed) == (30, 0, 0)
    assert result.stop_reason.startswith("rate limit")
    assert result.wait_seconds > 0  # what send_mail --loop sleeps
    assert len(mailserver.messages) == 30
    waiting = Message.all_objects.exclude(status=MessageStatus.SENT)
    assert waiting.count() == len(queued) - 30
    assert set(waiting.values_list("status", "attempts", "claim_token")) == {
        (MessageStatus.QUEUED, 0, None)
    }
