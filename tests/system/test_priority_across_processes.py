"""Priority across processes: a password reset queued by this process while
a separate ``send_mail`` drains a large newsletter goes out with the very next
batch, not after the newsletter. (In one process, and the claim order:
tests/sending/test_engine.py.)"""

from __future__ import annotations

import pytest

import mailer
from mailer.models import Message, MessageStatus
from tests.conftest import start_command
from tests.faultlib import addresses, deliveries, fill_single


@pytest.mark.slow
def test_high_priority_mail_overtakes_a_newsletter_another_process_drains(
    transactional_db, smtp_server, worker_env
):
    fill_single(addresses(20_000, "n"), subject="Newsletter")
    worker = start_command(
        worker_env, "send_mail", "--max-messages", "3000", "--batch-size", "100"
    )
    try:
        assert smtp_server.wait_for(500, timeout=120)
        mailer.send_mail(
            "Reset", "link", "site@example.com", ["reset@example.com"], "high"
        )
        received_when_queued = smtp_server.count  # read after the commit
        out, err = worker.communicate(timeout=180)
    finally:
        worker.kill()
        worker.wait()

    assert worker.returncode == 0, err
    assert out.startswith("sent 3000, deferred 0, failed 0, suppressed 0 in ")
    position = deliveries(smtp_server).index("reset@example.com")
    # The batch in flight finishes; the very next batch starts with the reset.
    assert position <= received_when_queued + 100
    assert Message.all_objects.get(to_address="reset@example.com").status == (
        MessageStatus.SENT
    )
