"""The bad-input matrix: every kind of bad input is either refused at the door
with an error that names the problem (and nothing is queued), or, when it
reaches the queue anyway, fails its own message with a clear reason while the
rest of the batch goes out.

Single emails enter through ``mailer.send_mail`` (``queue.build``), jobs
through ``create_job`` and ``process_mail_jobs``; both doors are tested. The
end-to-end cases run the real ``send_mail`` command against the SMTP server.
"""

from __future__ import annotations

from collections import Counter

import pytest
from django.utils import timezone

import mailer
import mailer.testing.smtp as smtp_module
from mailer.exceptions import (
    HeaderInjection,
    InvalidAddress,
    InvalidEmail,
    MessageTooLarge,
    TemplateProblem,
)
from mailer.jobs.expand import expand_pending_jobs
from mailer.jobs.services import RenderedEmail, create_job, render_email
from mailer.models import (
    JobStatus,
    LogResult,
    Message,
    MessageJob,
    MessageLog,
    MessageStatus,
)
from tests.conftest import run_command
from tests.faultlib import check_ok, fill_job, fill_single, report
from tests.testapp.models import Story

CONTENT = RenderedEmail(subject="The Daily", body_text="Hello [[mj:name]]\n")


def job(recipients, *, content=CONTENT, from_email=None):
    return create_job(content=content, recipients=recipients, from_email=from_email)


def single(subject="Hi", body="Body", from_email="a@example.com", to=("b@x.com",)):
    return mailer.send_mail(subject, body, from_email, list(to))


# -- at the door -------------------------------------------------------------------

DOOR = [
    # (case, call, error, words in the error)
    (
        "newline in subject (job)",
        lambda: job(
            ["a@example.com"],
            content=RenderedEmail(subject="Hi\r\nBcc: evil@example.com", body_text="b"),
        ),
        HeaderInjection,
        "Header 'Subject' contains a line break",
    ),
    (
        "newline in from (single)",
        lambda: single(from_email="a@example.com\nBcc: evil@example.com"),
        HeaderInjection,
        "Header 'From' contains a line break",
    ),
    (
        "newline in from (job)",
        lambda: job(["a@example.com"], from_email="a@example.com\nBcc: e@example.com"),
        HeaderInjection,
        "Header 'From' contains a line break",
    ),
    (
        "not-an-address as recipient (single)",
        lambda: single(to=["not-an-address"]),
        InvalidAddress,
        "Invalid address 'not-an-address'",
    ),
    (
        "not-an-address as sender (single)",
        lambda: single(from_email="not-an-address"),
        InvalidAddress,
        "Invalid address 'not-an-address'",
    ),
    (
        "not-an-address as sender (job)",
        lambda: job(["a@example.com"], from_email="not-an-address"),
        InvalidAddress,
        "Invalid address 'not-an-address'",
    ),
    (
        "over-size body (single)",
        lambda: single(body="x" * 20_000),
        MessageTooLarge,
        "over MAILER_MAX_MESSAGE_BYTES (10,000)",
    ),
    (
        "over-size body (job)",
        lambda: job(
            ["a@example.com"],
            content=RenderedEmail(subject="Big", body_text="x" * 20_000),
        ),
        MessageTooLarge,
        "over MAILER_MAX_MESSAGE_BYTES (10,000)",
    ),
    (
        "non-UTF-8 body (single)",
        lambda: single(body="caf\udce9"),
        InvalidEmail,
        "surrogates not allowed",
    ),
    (
        "non-UTF-8 content (job)",
        lambda: job(
            ["a@example.com"], content=RenderedEmail(subject="S", body_text="caf\udce9")
        ),
        InvalidEmail,
        "The text body is not valid text (it cannot be encoded as UTF-8 at position 3)",
    ),
    (
        "non-UTF-8 template result (job)",
        lambda: render_email(
            subject="News \udce9",
            text_template="testapp/story_email.txt",
            obj=Story(headline="x"),
        ),
        TemplateProblem,
        "The subject is not valid text (it cannot be encoded as UTF-8",
    ),
    (
        "template raising while rendering (job)",
        lambda: render_email(
            subject="News",
            text_template="testapp/story_email.txt",
            obj=Exploding(),
        ),
        TemplateProblem,
        "Rendering the email failed: RuntimeError: the CMS is down",
    ),
    (
        "broken template (job)",
        lambda: render_email(
            subject="News",
            text_template="testapp/broken_email.txt",
            obj=Story(headline="x"),
        ),
        TemplateProblem,
        "Email template has an error",
    ),
    (
        "empty recipient list (single)",
        lambda: single(to=[]),
        InvalidEmail,
        "The email has no recipients",
    ),
    (
        "empty recipient list (job)",
        lambda: job([]),
        InvalidEmail,
        "There are no recipients to send this email to",
    ),
    (
        "only blank recipients (job)",
        lambda: job(["", "  "]),
        InvalidEmail,
        "There are no recipients to send this email to",
    ),
]


class Exploding:
    """An announced object whose attribute blows up inside the template."""

    @property
    def headline(self):
        raise RuntimeError("the CMS is down")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "call, error, words", [c[1:] for c in DOOR], ids=[c[0] for c in DOOR]
)
def test_bad_input_is_refused_at_the_door_and_nothing_is_queued(
    settings, call, error, words
):
    settings.MAILER_MAX_MESSAGE_BYTES = 10_000
    with pytest.raises(error) as raised:
        call()
    assert words in str(raised.value)
    # An error an editor or a developer can act on: one line, no repr soup.
    assert "\n" not in str(raised.value).replace("\\n", "")
    assert not Message.all_objects.exists()
    assert not MessageJob.objects.exists()


@pytest.mark.django_db
def test_a_job_recipient_that_is_not_an_address_is_skipped_and_logged():
    created = job(["ann@example.com", "not-an-address", "jörg@example", "bob@x.io"])
    result = expand_pending_jobs()

    assert (result.queued, result.skipped) == (2, 2)
    assert sorted(Message.all_objects.values_list("to_address", flat=True)) == [
        "ann@example.com",
        "bob@x.io",
    ]
    skipped = dict(
        MessageLog.objects.filter(result=LogResult.SKIPPED).values_list(
            "recipient", "reply"
        )
    )
    assert skipped["not-an-address"] == "Invalid address 'not-an-address'"
    assert skipped["jörg@example"] == "Invalid address 'jörg@example'"
    created.refresh_from_db()
    assert created.skipped_count == 2


@pytest.mark.django_db
def test_a_job_of_only_invalid_addresses_is_done_without_sending():
    created = job(["nope", "also nope"])
    expand_pending_jobs()
    created.refresh_from_db()
    assert created.status == JobStatus.DONE
    assert not Message.all_objects.exists()


@pytest.mark.django_db
def test_10000_case_variants_of_10_addresses_are_one_recipient_each():
    people = [f"reader{i}@example.com" for i in range(10)]
    listed = [variant(a, n) for n in range(1000) for a in people]
    assert len(listed) == 10_000 and len({a.lower() for a in listed}) == 10

    created = job(listed)
    expand_pending_jobs()

    assert created.recipient_count == 10
    assert Message.all_objects.filter(job=created).count() == 10


def variant(address: str, n: int) -> str:
    """The n-th case variant of ``address`` (bit i of n upper-cases char i)."""
    return (
        "".join(c.upper() if (n >> i) & 1 else c for i, c in enumerate(address[:12]))
        + address[12:]
    )


# -- end to end, real send_mail processes ----------------------------------------


@pytest.mark.django_db(transaction=True)
def test_idn_addresses_are_delivered_with_punycode_on_the_wire(worker_env, smtp_server):
    single(subject="Grüße", to=["joerg@bücher.example", "Zoë <zoe@müller.example>"])
    job(["ann@bücher.example", {"email": "bob@mañana.example", "name": "Bob"}])
    expand_pending_jobs()

    result = check_ok(run_command(worker_env, "send_mail"))

    wire = {
        "joerg@xn--bcher-kva.example",
        "zoe@xn--mller-kva.example",
        "ann@xn--bcher-kva.example",
        "bob@xn--maana-pta.example",
    }
    row = report("IDN domains (punycode on the wire)", wire, smtp_server.counts)
    assert result["sent"] == 3 and result["failed"] == 0
    assert (row["delivered"], row["duplicates"], row["lost"]) == (4, 0, 0)
    for received in smtp_server.messages:
        assert all(r.isascii() for r in received.rcpt_tos)
        # Headers are 7-bit: the domain in punycode, a display name encoded.
        head = received.data.split(b"\r\n\r\n", 1)[0]
        assert head.isascii()
        to = received.message["To"]
        assert {a.domain for a in to.addresses} <= {
            "xn--bcher-kva.example",
            "xn--mller-kva.example",
            "xn--maana-pta.example",
        }


@pytest.mark.django_db(transaction=True)
def test_10000_case_duplicates_reach_each_mailbox_once(worker_env, smtp_server):
    people = [f"reader{i}@example.com" for i in range(10)]
    listed = [variant(a, n) for n in range(1000) for a in people]
    # One single email to all 10,000 spellings, and a job for them.
    single(subject="One email", to=listed)
    job(listed)
    expand_pending_jobs()

    result = check_ok(run_command(worker_env, "send_mail"))

    assert result["sent"] == 11  # the single email, and 10 job messages
    by_kind = {"single email": Counter(), "job": Counter()}
    for received in smtp_server.messages:
        kind = "single email" if len(received.rcpt_tos) > 1 else "job"
        by_kind[kind].update(received.rcpt_tos)
    for kind, counts in by_kind.items():
        row = report(f"10,000 case duplicates of 10 ({kind})", people, counts)
        assert (row["delivered"], row["duplicates"], row["lost"]) == (10, 0, 0)


@pytest.mark.django_db(transaction=True)
def test_bad_rows_in_the_queue_fail_alone_and_the_batch_goes_on(
    worker_env, smtp_server, monkeypatch
):
    """Rows that slipped past the door (queued by an older version, edited in
    the database, a job whose stored headers were changed) each fail with a
    reason; every good email around them goes out exactly once."""
    # The relay refuses messages over 20 kB (552 after DATA).
    smtp_server.stop()
    monkeypatch.setattr(smtp_module, "DATA_SIZE_LIMIT", 20_000)
    smtp_server.start()

    good = sorted(fill_single([f"single{i:03d}@example.com" for i in range(60)]))
    newsletter = fill_job([f"job{i:03d}@example.com" for i in range(60)])
    good += [f"job{i:03d}@example.com" for i in range(60)]
    now = timezone.now()
    broken_job = MessageJob.objects.create(
        subject="Broken",
        from_email="news@example.com",
        body_text="b",
        headers={"X-Campaign": "spring\r\nBcc: evil@example.com"},
        status=JobStatus.QUEUED,
    )
    bad = {
        "not-an-address": Message(job=newsletter, to_address="not-an-address"),
        "header injection": Message(
            job=newsletter, to_address="eve@example.com\r\nBcc: evil@example.com"
        ),
        "non-ASCII, no dot in domain": Message(
            job=newsletter, to_address="jörg@example"
        ),
        "job with broken headers": Message(
            job=broken_job, to_address="victim@example.com"
        ),
        "envelope not an address": Message(
            to_address="not-an-address",
            envelope_from="news@example.com",
            envelope_to=["not-an-address"],
            mime=b"Subject: x\r\n\r\nx\r\n",
        ),
        "no content": Message(
            to_address="empty@example.com",
            envelope_from="news@example.com",
            envelope_to=["empty@example.com"],
            mime=None,
        ),
        "over the relay's size limit": Message(
            to_address="big@example.com",
            envelope_from="news@example.com",
            envelope_to=["big@example.com"],
            mime=b"Subject: big\r\n\r\n"
            + b"x" * 70
            + b"\r\n" * 0
            + (b"y" * 76 + b"\r\n") * 400,
        ),
    }
    for message in bad.values():
        message.due_at = now
    Message.all_objects.bulk_create(bad.values())

    run = run_command(worker_env, "send_mail", "--batch-size", "25")
    result = check_ok(run)

    row = report(
        "bad rows among 120 good ones",
        good,
        smtp_server.counts,
        undeliverable=["not-an-address", "big@example.com", "empty@example.com"],
        failed=result["failed"],
    )
    assert (result["sent"], result["failed"], result["deferred"]) == (120, 7, 0)
    assert (row["delivered"], row["duplicates"], row["lost"], row["leaked"]) == (
        120,
        0,
        0,
        0,
    )
    assert "evil@example.com" not in smtp_server.counts
    reasons, codes = {}, {}
    for name, message in bad.items():
        message.refresh_from_db()
        assert (message.status, message.attempts) == (MessageStatus.FAILED, 1), name
        (log,) = MessageLog.objects.filter(message_pk=message.pk)
        reasons[name], codes[name] = log.reply, log.smtp_code
    assert "Invalid address 'not-an-address'" in reasons["not-an-address"]
    assert "line break" in reasons["header injection"]
    assert "Invalid address 'jörg@example'" in reasons["non-ASCII, no dot in domain"]
    assert (
        "Header 'X-Campaign' contains a line break"
        in reasons["job with broken headers"]
    )
    assert "Invalid address 'not-an-address'" in reasons["envelope not an address"]
    assert reasons["no content"].startswith("cannot build message")
    # Refused before DATA against the relay's advertised SIZE (RFC 1870),
    # not by the relay's 552 after all its bytes went over the wire.
    assert codes["over the relay's size limit"] is None
    assert "over the 20,000 bytes" in reasons["over the relay's size limit"]
    assert "EHLO SIZE" in reasons["over the relay's size limit"]
