"""Two ``send_mail`` processes draining one queue at the same time: every
message is delivered exactly once, whichever database holds the queue."""

from __future__ import annotations

import re

import pytest
from django.db.models import Count

import mailer
from mailer.models import LogResult, Message, MessageLog, MessageStatus
from tests.conftest import start_command

pytestmark = pytest.mark.slow

MESSAGES = 3000
SUMMARY = re.compile(
    r"sent (\d+), deferred 0, failed 0, suppressed 0 in \d+\.\d\ds "
    r"\(\d+\.\d/s\); stopped: queue empty\n"
)


def test_two_workers_on_one_queue_deliver_every_message_exactly_once(
    transactional_db, smtp_server, worker_env
):
    addresses = [f"reader{i}@example.com" for i in range(MESSAGES)]
    mailer.send_mass_mail(
        [(f"Issue for {a}", "News", "news@example.com", [a]) for a in addresses]
    )
    # A little latency per message, as a real relay has, so the two runs
    # overlap for most of the queue instead of one finishing before the other
    # has started.
    smtp_server.delay(0.002)

    workers = [
        start_command(worker_env, "send_mail", "--batch-size", "50") for _ in range(2)
    ]
    try:
        outputs = [worker.communicate(timeout=300) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()

    assert [worker.returncode for worker in workers] == [0, 0], outputs
    assert [err for _out, err in outputs] == ["", ""]
    sent = [int(SUMMARY.fullmatch(out).group(1)) for out, _ in outputs]
    assert sum(sent) == MESSAGES
    assert min(sent) > 0, sent  # both really took part

    # What the server saw: each reader once, one connection per worker.
    assert smtp_server.count == MESSAGES
    assert sorted(smtp_server.counts) == sorted(addresses)
    assert set(smtp_server.counts.values()) == {1}
    assert smtp_server.connections == 2
    message_ids = {m.message["Message-ID"] for m in smtp_server.messages}
    assert len(message_ids) == MESSAGES

    # What the database says: every message sent once, nothing left claimed.
    assert Message.objects.filter(status=MessageStatus.SENT).count() == MESSAGES
    assert set(Message.objects.values_list("attempts", flat=True)) == {1}
    assert not Message.objects.filter(claim_token__isnull=False).exists()
    per_message = (
        MessageLog.objects.values("message_pk").annotate(n=Count("id")).order_by()
    )
    assert len(per_message) == MESSAGES
    assert {row["n"] for row in per_message} == {1}
    assert set(MessageLog.objects.values_list("result", flat=True)) == {LogResult.SENT}
