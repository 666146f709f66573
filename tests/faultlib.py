"""Shared by the fault-injection suite (test_faults, test_crashes, test_workers,
test_bad_input) and the unit tests that set up the same way (tests/sending):
filling the queue fast, waiting with a bound, reading the send_mail summary,
the Message-IDs the server received, making mail in doubt due, and the
one-line report each case prints.

How a case is scored, from what the SMTP server received:

- delivered: distinct expected recipients the server accepted mail for;
- duplicates: accepted deliveries beyond the first, per expected recipient;
- lost: expected recipients never delivered, once those the case expects to
  fail (rejected, suppressed, invalid) are set aside.

Each row is printed (visible with ``pytest -s``) and, when the environment
names a file in ``MAILER_FAULT_REPORT``, appended to it as one JSON line, so
the table for the issue note can be built from a whole run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterable

from django.db import connection
from django.db.models import Count
from django.utils import timezone

from mailer.jobs.services import RenderedEmail, create_job
from mailer.models import (
    JobStatus,
    LogResult,
    Message,
    MessageJob,
    MessageLog,
    MessageStatus,
    Priority,
)
from tests.conftest import start  # noqa: F401 - re-exported for the fault tests

#: ``send_mail``'s one summary line.
SUMMARY = re.compile(
    r"sent (\d+), deferred (\d+), failed (\d+), suppressed (\d+)"
    r"(?:, in doubt (\d+))? in (\d+\.\d\d)s "
    r"\(\d+\.\d/s\); stopped: ([a-z ]+)"
)


def received(counts: Counter) -> Counter:
    """The server's per-recipient counts, keyed case-insensitively."""
    folded: Counter = Counter()
    for address, n in counts.items():
        folded[address.lower()] += n
    return folded


def score(
    expected: Iterable[str],
    counts: Counter,
    *,
    undeliverable: Iterable[str] = (),
) -> dict[str, int]:
    expected = {a.lower() for a in expected}
    undeliverable = {a.lower() for a in undeliverable}
    got = received(counts)
    wanted = expected - undeliverable
    return {
        "queued": len(expected),
        "delivered": len(wanted & set(got)),
        "duplicates": sum(got[a] - 1 for a in expected if got[a] > 1),
        "lost": len(wanted - set(got)),
        # Mail that should have failed but reached the server anyway.
        "leaked": sum(got[a] for a in undeliverable),
    }


def report(
    fault: str,
    expected: Iterable[str],
    counts: Counter,
    *,
    undeliverable: Iterable[str] = (),
    database: str | None = None,
    **extra,
) -> dict:
    """Score a case against what the server received, and emit its row."""
    return emit(
        fault,
        database=database,
        **score(expected, counts, undeliverable=undeliverable),
        **extra,
    )


def emit(fault: str, *, database: str | None = None, **values) -> dict:
    """Print a row (fault, database, delivered, duplicates, lost, notes) and
    append it to $MAILER_FAULT_REPORT as a JSON line."""
    row = {"fault": fault, "database": database or connection.vendor, **values}
    main = ("delivered", "duplicates", "lost")
    notes = ", ".join(
        f"{k}={v}" for k, v in values.items() if k not in (*main, "queued", "leaked")
    )
    print(
        f"\nFAULT | {fault:<46} | {row['database']:<10}"
        f" | delivered {row['delivered']:>6} | duplicates {row['duplicates']:>3}"
        f" | lost {row['lost']:>3} | {notes}"
    )
    path = os.environ.get("MAILER_FAULT_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(row) + "\n")
    return row


def addresses(n: int, prefix: str) -> list[str]:
    return [f"{prefix}{i:05d}@example.com" for i in range(n)]


def fill_single(recipients: list[str], *, subject: str = "News") -> set[str]:
    """Queue one single (non-job) email per address, with bulk_create: the
    stored bytes are what ``queue.build`` stores, minus Django's cost."""
    now = timezone.now()
    Message.all_objects.bulk_create(
        [
            Message(
                to_address=a,
                envelope_from="news@example.com",
                envelope_to=[a],
                subject=subject,
                mime=(
                    f"From: news@example.com\r\nTo: {a}\r\nSubject: {subject}\r\n"
                    f"Message-ID: <{i}.fault@example.com>\r\n\r\nNews for {a}\r\n"
                ).encode(),
                priority=Priority.MEDIUM,
                due_at=now,
            )
            for i, a in enumerate(recipients)
        ],
        batch_size=2000,
    )
    return set(recipients)


def fill_job(
    recipients: list[str], *, subject: str = "The Daily", body: str = ""
) -> MessageJob:
    """A job whose messages are already expanded (bulk_create), as
    ``process_mail_jobs`` leaves them: the newsletter path of the sender."""
    job = create_job(
        content=RenderedEmail(
            subject=subject,
            body_text=body or "Hello [[mj:email]], today's news.\n",
            body_html="<p>Hello [[mj:email]]</p>",
        ),
        recipients=recipients[:1],
    )
    now = timezone.now()
    Message.all_objects.bulk_create(
        [
            Message(job=job, to_address=a, priority=job.priority, due_at=now)
            for a in recipients
        ],
        batch_size=2000,
    )
    MessageJob.objects.filter(pk=job.pk).update(
        status=JobStatus.QUEUED,
        recipients=recipients,
        recipient_count=len(recipients),
        expanded_count=len(recipients),
    )
    return job


def wait_until(
    predicate: Callable[[], bool], timeout: float, interval: float = 0.01
) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds; return its last
    value (every wait in the suite is bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def wait_for_mail(server, count: int, process: subprocess.Popen, timeout: float):
    """Wait until ``server`` has accepted ``count`` messages, or ``process``
    has ended, or ``timeout`` seconds have passed."""
    return wait_until(
        lambda: server.count >= count or process.poll() is not None, timeout
    )


def summary(out: str) -> dict:
    """The numbers of ``send_mail``'s summary line in ``out``."""
    match = SUMMARY.search(out)
    assert match, f"no summary line in {out!r}"
    sent, deferred, failed, suppressed, in_doubt, seconds, reason = match.groups()
    return {
        "sent": int(sent),
        "deferred": int(deferred),
        "failed": int(failed),
        "suppressed": int(suppressed),
        "in_doubt": int(in_doubt or 0),
        "seconds": float(seconds),
        "stopped": reason.strip(),
    }


def check_ok(done: subprocess.CompletedProcess) -> dict:
    assert done.returncode == 0, done.stderr
    return summary(done.stdout)


def nothing_claimed() -> bool:
    """No pending message is held by a lease (all claims were given back)."""
    return not Message.all_objects.pending().filter(claim_token__isnull=False).exists()


def nothing_claimed_after_lease() -> bool:
    """Every claim of a killed worker is due again (its lease ran out)."""
    return not (
        Message.all_objects.pending()
        .filter(claim_token__isnull=False, due_at__gt=timezone.now())
        .exists()
    )


def deliveries(server) -> list[str]:
    """Every recipient the server accepted mail for, in arrival order, one
    entry per delivery (a duplicate shows as a second entry)."""
    return [rcpt for m in server.messages for rcpt in m.rcpt_tos]


def duplicates(delivered: list[str]) -> int:
    """Deliveries beyond the first, over all recipients."""
    return sum(n - 1 for n in Counter(delivered).values())


def one_sent_log_per_message() -> bool:
    """Each sent message has exactly one "sent" log row, and only sent
    messages have one."""
    per_message = (
        MessageLog.objects.filter(result=LogResult.SENT)
        .values("message_pk")
        .annotate(n=Count("id"))
    )
    return {row["n"] for row in per_message} == {1} and len(per_message) == (
        Message.all_objects.filter(status=MessageStatus.SENT).count()
    )


def every_message_sent_once() -> bool:
    """Every queued message is sent, with exactly one "sent" log row."""
    if Message.all_objects.exclude(status=MessageStatus.SENT).exists():
        return False
    return one_sent_log_per_message()


def pending_count() -> int:
    return Message.all_objects.filter(
        status__in=[MessageStatus.QUEUED, MessageStatus.DEFERRED]
    ).count()


def message_ids(server, address: str) -> list[str]:
    """The Message-ID header of each message ``server`` received for
    ``address``, in arrival order (one entry per delivery)."""
    return [
        str(m.message["Message-ID"]) for m in server.messages if address in m.rcpt_tos
    ]


def make_in_doubt_due() -> None:
    """The in-doubt delay (20 min by default), skipped: every in-doubt
    message is due now."""
    Message.all_objects.filter(status=MessageStatus.IN_DOUBT).update(
        due_at=Message._meta.get_field("due_at").default()
    )
