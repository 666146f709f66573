"""Short leases, renewed while the worker lives: mail claimed by a worker
killed with kill -9 goes out again within about a minute with the default
settings (lease 45 s, SMTP timeout 15 s), and a live worker's claims never
run out under it."""

from __future__ import annotations

import signal

import pytest

from mailer.models import Message, MessageStatus
from tests.faultlib import (
    addresses,
    fill_single,
    report,
    start,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def defaults(worker_env) -> dict[str, str]:
    """A worker on the shipped defaults: no EMAIL_TIMEOUT, the default lease."""
    env = {**worker_env, "MAILER_TEST_EMAIL_TIMEOUT": "none"}
    env["MAILER_TEST_LEASE_SECONDS"] = "45"
    return env


def test_kill_9_mail_goes_out_again_within_a_minute_with_defaults(
    defaults, smtp_server
):
    recipients = addresses(1000, "k9lease")
    fill_single(recipients)
    smtp_server.delay_replies(0.002, greeting=False)
    first = start(defaults, "send_mail", "--batch-size", "100")
    assert wait_until(lambda: smtp_server.count >= 150, 60)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    killed_with = smtp_server.count
    held = Message.all_objects.pending().filter(claim_token__isnull=False).count()
    assert 0 < held <= 100

    # A long-lived worker takes over: everything but the dead worker's batch
    # at once, that batch when its lease (45 s from its last renewal) ends.
    second = start(
        defaults, "send_mail", "--loop", "--idle-seconds", "1", "--batch-size", "100"
    )
    everything_out = wait_until(
        lambda: not Message.all_objects.exclude(status=MessageStatus.SENT).exists(),
        timeout=75,
        interval=0.5,
    )
    second.send_signal(signal.SIGTERM)
    out, err = second.communicate(timeout=30)

    row = report(
        "kill -9, default lease, a loop worker takes over",
        recipients,
        smtp_server.counts,
        held_by_the_dead=held,
        sent_before_the_kill=killed_with,
    )
    assert second.returncode == 0, err
    assert everything_out
    assert row["lost"] == 0
    assert row["duplicates"] <= 1
