"""One canonical identity per mailbox (issue 12, item 5): the normalised
addr-spec, IDN domains in punycode, used for de-duplication at the click and
at expansion (also after a resumed expansion), the don't-send list and
unsubscribe. Addresses Django's SMTP backend would refuse, or that Python's
parser would read as another address, are refused for single mail and
skipped (and counted) for jobs, never rewritten."""

from __future__ import annotations

import pytest

import mailer
from mailer.addresses import envelope_address, normalize
from mailer.exceptions import InvalidAddress
from mailer.jobs.expand import expand_job, expand_pending_jobs
from mailer.jobs.services import RenderedEmail, create_job
from mailer.models import LogResult, Message, MessageJob, MessageLog
from mailer.sending.engine import send_queued
from mailer.suppression import unsubscribe
from mailer.unsubscribe.tokens import make_token, read_token

CONTENT = RenderedEmail(subject="News", body_text="Hello [[mj:name]]\n")

#: Malformed addresses; some Python patch levels read some of them as another,
#: valid address (CVE-2023-27043), e.g. the first as alice@example.org.
MALFORMED = [
    "alice@example.org)<bob@example.org>",
    "alice@example.org <bob@example.org>",
    "Ann <ann@example.com",
    "ann@example.com>",
    "Ann <ann@example.com> trailing",
    "bob@example.org (a comment)",
    "a@b@example.org",
    "ann@example.com,",
]


@pytest.mark.parametrize(
    "address, identity",
    [
        ("anna@example.com", "anna@example.com"),
        ("Anna <anna@example.com>", "anna@example.com"),
        ("  Anna Example <Anna@Example.COM>  ", "anna@example.com"),
        ('"Example, Anna" <anna@example.com>', "anna@example.com"),
        ("<anna@example.com>", "anna@example.com"),
        ("ann@bücher.example", "ann@xn--bcher-kva.example"),
        ("Ann <ann@BÜCHER.example>", "ann@xn--bcher-kva.example"),
        ("ann@xn--bcher-kva.example", "ann@xn--bcher-kva.example"),
        ("ANN@XN--BCHER-KVA.EXAMPLE", "ann@xn--bcher-kva.example"),
    ],
)
def test_normalize_gives_one_identity_per_mailbox(address, identity):
    assert normalize(address) == identity


@pytest.mark.parametrize(
    "address, envelope",
    [
        ("anna@example.com", "anna@example.com"),
        ("Anna <anna@example.com>", "anna@example.com"),
        ("Zoë Doe <zoe@example.org>", "zoe@example.org"),
        ('"Doe, Zoë" <zoe@example.org>', "zoe@example.org"),
        ("ann@bücher.example", "ann@xn--bcher-kva.example"),
        ("Ann <Ann@Bücher.example>", "Ann@xn--bcher-kva.example"),
        # RFC 6531: a non-ASCII local part stays; it is sent with SMTPUTF8.
        ("Jörg <jörg@bücher.example>", "jörg@xn--bcher-kva.example"),
    ],
)
def test_envelope_address_is_the_addr_spec_in_ascii(address, envelope):
    assert envelope_address(address) == envelope


@pytest.mark.parametrize("address", [*MALFORMED, "jö\u2028rg@example.com", "ann", ""])
def test_envelope_address_refuses_and_never_rewrites(address):
    with pytest.raises(InvalidAddress, match="Invalid address"):
        envelope_address(address)


@pytest.mark.django_db
@pytest.mark.parametrize("address", MALFORMED)
def test_single_mail_to_a_malformed_address_is_refused_at_the_door(address):
    with pytest.raises(InvalidAddress) as raised:
        mailer.send_mail("Hi", "Body", "news@example.com", [address])
    assert repr(address) in str(raised.value)
    assert Message.all_objects.count() == 0


@pytest.mark.django_db
def test_single_mail_to_two_spellings_of_one_address_goes_once(mailserver):
    mailer.send_mail(
        "Hi",
        "Body",
        "news@example.com",
        [
            "anna@example.com",
            "Anna <ANNA@example.com>",
            "ann@bücher.example",
            "ann@xn--bcher-kva.example",
        ],
    )
    send_queued()
    [received] = mailserver.messages
    assert received.rcpt_tos == ["anna@example.com", "ann@xn--bcher-kva.example"]


def job(recipients) -> MessageJob:
    return create_job(content=CONTENT, recipients=recipients)


def received_by(mailserver) -> list[str]:
    return sorted(rcpt for m in mailserver.messages for rcpt in m.rcpt_tos)


@pytest.mark.django_db
def test_a_reader_listed_twice_in_two_spellings_gets_one_email(mailserver):
    created = job(
        [
            "anna@example.com",
            {"email": "Anna <anna@example.com>", "name": "Anna"},
            "ann@bücher.example",
            "ann@xn--bcher-kva.example",
            "ANN@XN--BCHER-KVA.example",
        ]
    )
    assert created.recipient_count == 2
    expand_pending_jobs()
    assert send_queued().sent == 2
    assert received_by(mailserver) == ["ann@xn--bcher-kva.example", "anna@example.com"]


@pytest.mark.django_db
def test_duplicates_across_a_resumed_expansion_are_skipped(mailserver):
    # Snapshot entries are kept as given; the click de-duplicates, so the
    # spellings here reach the snapshot as a job made by an older version.
    created = job(["x@example.com"])
    MessageJob.objects.filter(pk=created.pk).update(
        recipients=[
            ["Anna <anna@example.com>", {"name": "Anna"}],
            "bob@example.com",
            "ANNA@example.com",
            "ann@bücher.example",
            "ann@xn--bcher-kva.example",
        ],
        recipient_count=5,
    )
    chunks = iter([False, True])
    assert expand_job(created.pk, chunk_size=2, should_stop=lambda: next(chunks)) == (
        2,
        0,
    )
    assert expand_job(created.pk, chunk_size=2) == (1, 2)
    send_queued()
    assert received_by(mailserver) == [
        "ann@xn--bcher-kva.example",
        "anna@example.com",
        "bob@example.com",
    ]
    assert sorted(
        MessageLog.objects.filter(result=LogResult.SKIPPED).values_list(
            "recipient", "reply"
        )
    ) == [
        ("ANNA@example.com", "duplicate address"),
        ("ann@xn--bcher-kva.example", "duplicate address"),
    ]


@pytest.mark.django_db
def test_unsubscribing_one_spelling_stops_every_spelling(mailserver):
    before = job([{"email": "Anna <anna@example.com>", "name": "Anna"}])
    expand_pending_jobs()
    # The token of the display-name form carries the identity.
    assert read_token(make_token("Anna <Anna@example.com>", before.pk)).address == (
        "anna@example.com"
    )
    unsubscribe("anna@example.com")
    unsubscribe("Ann <ann@bücher.example>")
    after = job(
        ["Anna <anna@example.com>", "ann@xn--bcher-kva.example", "b@example.com"]
    )
    expand_pending_jobs()

    send_queued()

    assert received_by(mailserver) == ["b@example.com"]
    assert MessageJob.objects.get(pk=after.pk).skipped_count == 2


@pytest.mark.django_db
@pytest.mark.parametrize("address", MALFORMED)
def test_job_readers_with_malformed_addresses_are_skipped_and_counted(
    mailserver, address
):
    created = job([address, "ok@example.com"])
    result = expand_pending_jobs()
    send_queued()

    assert (result.queued, result.skipped) == (1, 1)
    assert MessageJob.objects.get(pk=created.pk).skipped_count == 1
    log = MessageLog.objects.get(result=LogResult.SKIPPED)
    assert (log.recipient, log.reply.startswith("Invalid address")) == (address, True)
    assert received_by(mailserver) == ["ok@example.com"]


# -- normalize and envelope_address, case by case (issue 16, item 7) -------------


@pytest.mark.parametrize(
    "address, identity",
    [
        # The whole addr-spec is lower-cased; nothing else is rewritten.
        ("ANN@EXAMPLE.COM", "ann@example.com"),
        ("Ann+news@Example.com", "ann+news@example.com"),
        ("first.last@example.com", "first.last@example.com"),
        ("Ann@[192.0.2.1]", "ann@[192.0.2.1]"),
        # White space around, display names with commas, quotes and an @.
        (" \tann@example.com\n", "ann@example.com"),
        ('"Doe, Ann" <Ann@Example.com>', "ann@example.com"),
        ('"a@b.example" <Real@Example.com>', "real@example.com"),
        # International domains in punycode, a non-ASCII local part kept.
        ("ann@münchen.DE", "ann@xn--mnchen-3ya.de"),
        ("JÖRG@bücher.example", "jörg@xn--bcher-kva.example"),
        ("Zoë <ZOË@MÜNCHEN.de>", "zoë@xn--mnchen-3ya.de"),
        # Invalid addresses are compared as written (lower-cased), never
        # repaired and never an error.
        ("ann", "ann"),
        ("", ""),
        ("   ", ""),
        ("<>", ""),
        ("ann@example.com>", "ann@example.com>"),
        ("ann@EXAMPLE.com.", "ann@example.com."),
        ("no-at-ü", "no-at-ü"),
        ("ann@bad..ü", "ann@bad..ü"),  # not a valid domain: no punycode
    ],
)
def test_normalize_table(address, identity):
    assert normalize(address) == identity


@pytest.mark.parametrize(
    "address, envelope",
    [
        # The fast path (a plain ASCII address) and the full check agree.
        ("ann@example.com", "ann@example.com"),
        ("Ann+news@Example.COM", "Ann+news@Example.COM"),  # case kept
        ("first.last@sub.example.co.uk", "first.last@sub.example.co.uk"),
        ("ann@123.example", "ann@123.example"),
        ("o'brien@example.ie", "o'brien@example.ie"),
        ("ann@xn--mnchen-3ya.de", "ann@xn--mnchen-3ya.de"),
        ("Ann <ann@example.com>", "ann@example.com"),
        ('"Doe, Ann" <ann@example.com>', "ann@example.com"),
        ("  ann@example.com  ", "ann@example.com"),
        # Only the domain goes to punycode; its labels keep their case.
        ("ann@münchen.de", "ann@xn--mnchen-3ya.de"),
        ("ANN@MÜNCHEN.DE", "ANN@xn--mnchen-3ya.DE"),
        ("Zoë <zoë@münchen.de>", "zoë@xn--mnchen-3ya.de"),
        ("jörg@example.com", "jörg@example.com"),
    ],
)
def test_envelope_address_table(address, envelope):
    assert envelope_address(address) == envelope


@pytest.mark.parametrize(
    "address, reason",
    [
        ("ann@example", "Invalid address 'ann@example'"),
        ("ann@-bad.example", "Invalid address 'ann@-bad.example'"),
        ("ann@example.com.", "Invalid address 'ann@example.com.'"),
        ("ann@example.c0m", "Invalid address 'ann@example.c0m'"),
        ("ann..b@example.com", "Invalid address 'ann..b@example.com'"),
        (".ann@example.com", "Invalid address '.ann@example.com'"),
        ("ann.@example.com", "Invalid address 'ann.@example.com'"),
        ("ann example@example.com", "Invalid address 'ann example@example.com'"),
        ("ann@exa mple.com", "Invalid address 'ann@exa mple.com'"),
        ("ann@@example.com", "not a single address"),
        # The same refusal on Python 3.11 to 3.13 (3.13's parser alone
        # refuses it as "not a single address").
        ("ann@[192.0.2.1]", "an address literal"),
        ("Ann <ann@[IPv6:2001:db8::1]>", "an address literal"),
        ("Ann <ann@example.com>, bob@example.com", "not a single address"),
        ("ann@example.com\r\nBcc: eve@example.com", "contains a line break"),
        ("ann@example.com\nBcc: eve@example.com", "contains a line break"),
        ("x@" + "a" * 250 + ".com", "Invalid address 'x@aaaa"),
        (None, "not a string"),
        (b"ann@example.com", "not a string"),
    ],
)
def test_envelope_address_refusals_table(address, reason):
    with pytest.raises(InvalidAddress) as refused:
        envelope_address(address)
    assert reason in str(refused.value)
