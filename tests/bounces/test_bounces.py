"""Late bounces and complaints (issue 18): VERP envelope senders through the
real SMTP server, DSN and ARF samples from Postfix, Exim, Gmail, Outlook and
Yahoo, and ``process_bounces`` reading a real Dovecot over IMAPS, a Maildir
and standard input."""

from __future__ import annotations

import imaplib
import io
import mailbox
import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

import mailer
from mailer.bounces import verp
from mailer.bounces.parse import COMPLAINT, HARD, SOFT, parse
from mailer.jobs.expand import expand_pending_jobs
from mailer.jobs.services import RenderedEmail, create_job
from mailer.models import (
    DontSendEntry,
    LogResult,
    Message,
    MessageLog,
    SuppressionReason,
)
from mailer.sending.engine import send_queued
from mailer.signals import complained
from tests.conftest import ROOT, by_recipient
from tests.without import run, settings_env

pytestmark = pytest.mark.django_db

SAMPLES = Path(__file__).parent.parent / "fixtures" / "bounces"
READER = "reader@example.org"
BOUNCES = "bounces@news.example"


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def for_reader(name: str, reader: str, verp_address: str) -> bytes:
    """A sample DSN rewritten for ``reader`` and the VERP address our email
    went out with (as the reporting MTA would have built it)."""
    data = sample(name).replace(READER.encode(), reader.encode())
    return data.replace(BOUNCES.encode(), verp_address.encode())


def send_job(readers: list[str], subject: str = "Issue 7") -> None:
    """Queue, expand and send a job."""
    create_job(
        content=RenderedEmail(subject=subject, body_text="Dear reader,\n"),
        recipients=readers,
        from_email="The Daily <news@news.example>",
    )
    expand_pending_jobs()
    assert send_queued().failed == 0


def envelope_senders(server) -> dict[str, str]:
    return {a: m.mail_from for a, m in by_recipient(server.messages).items()}


@pytest.fixture
def verp_on(settings):
    settings.MAILER_BOUNCE_ADDRESS = BOUNCES
    settings.MAILER_SOFT_BOUNCE_LIMIT = 3
    settings.MAILER_SOFT_BOUNCE_DAYS = 7


# -- VERP -------------------------------------------------------------------------


def test_a_token_maps_back_to_its_message_and_a_forged_one_is_ignored(settings):
    settings.MAILER_BOUNCE_ADDRESS = BOUNCES
    address = verp.envelope_sender(1234)
    local, domain = address.split("@")
    assert domain == "news.example"
    assert local.startswith("bounces+m1234-")
    assert len(local) <= 64  # RFC 5321 4.5.3.1.1
    assert verp.message_pk_from(address) == 1234
    assert verp.message_pk_from(address.upper()) == 1234  # case may change
    assert verp.message_pk_from(address.replace("m1234-", "m1235-")) is None
    mac = local.rpartition("-")[2]
    forged = address.replace(mac, ("a" if mac[0] != "a" else "b") + mac[1:])
    assert verp.message_pk_from(forged) is None
    assert verp.message_pk_from(BOUNCES) is None
    assert verp.message_pk_from("bounces+m1234-short@news.example") is None


def test_job_mail_goes_out_with_each_readers_verp_sender(mailserver, verp_on):
    send_job(["ann@example.com", "tom@example.com"])
    senders = envelope_senders(mailserver)
    for reader, sender in senders.items():
        message = Message.all_objects.get(to_address=reader)
        assert sender == verp.envelope_sender(message.pk)
        assert verp.message_pk_from(sender) == message.pk
    assert len(set(senders.values())) == 2
    # The header From is the newsroom's, only the envelope changes.
    assert {m.message["From"].addresses[0].addr_spec for m in mailserver.messages} == {
        "news@news.example"
    }


def test_single_mail_goes_out_with_its_verp_sender(mailserver, verp_on):
    mailer.send_mail("Reset", "Your link", "site@news.example", ["ann@example.com"])
    send_queued()
    [received] = mailserver.messages
    message = Message.all_objects.get()
    assert received.mail_from == verp.envelope_sender(message.pk)


def test_without_a_bounce_address_the_envelope_sender_is_unchanged(mailserver):
    mailer.send_mail("Reset", "Your link", "site@news.example", ["ann@example.com"])
    send_queued()
    assert mailserver.messages[0].mail_from == "site@news.example"


# -- parsing the samples ----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind", "status"),
    [
        ("postfix-3.7/dsn-job-unknown-user-5.1.1.eml", HARD, "5.1.1"),
        ("postfix-3.7/dsn-job-unknown-user-8bit-original.eml", HARD, "5.1.1"),
        ("exim-4/dsn-550-user-unknown.eml", HARD, "5.1.1"),
        ("exim-4/old-form-x-failed-recipients.eml", HARD, ""),
        ("gmail/dsn-account-does-not-exist.eml", HARD, "5.1.1"),
        ("gmail/dsn-over-quota-delayed.eml", SOFT, "4.2.2"),
        ("outlook/dsn-mailbox-unavailable.eml", HARD, "5.5.0"),
        ("outlook/arf-jmrp-complaint.eml", COMPLAINT, ""),
        ("yahoo/old-form-no-account.eml", HARD, ""),
        ("yahoo/arf-abuse-redacted.eml", COMPLAINT, ""),
    ],
)
def test_each_sample_names_its_recipient_and_how_bad(name, kind, status):
    report = parse(sample(name))
    assert report.readable
    [failure] = report.failures
    expected = {
        "postfix-3.7/dsn-job-unknown-user-5.1.1.eml": "gone1@nouser.example",
        "postfix-3.7/dsn-job-unknown-user-8bit-original.eml": "gone6@nouser.example",
    }.get(name, READER)
    assert failure.address == expected
    assert (failure.kind, failure.status) == (kind, status)


def test_a_postfix_dsn_for_two_recipients_names_both():
    report = parse(sample("postfix-3.7/dsn-single-mail-two-recipients.eml"))
    assert [f.address for f in report.failures] == [
        "gone4@nouser.example",
        "gone5@nouser.example",
    ]
    assert report.message_id == "<179608084022.30879.17373987349069456150@localhost>"


def test_a_persons_reply_and_garbage_are_unreadable():
    assert not parse(sample("not-a-bounce.eml")).readable
    assert not parse(b"\x00\xff not mail at all").readable


# -- processing -------------------------------------------------------------------


def dsn_for(server, reader: str, name: str = "gmail/dsn-account-does-not-exist.eml"):
    return for_reader(name, reader, envelope_senders(server)[reader])


def test_a_hard_bounce_suppresses_at_once_and_the_next_job_skips_the_reader(
    mailserver, verp_on, tmp_path
):
    send_job(["ann@example.com", "tom@example.com"])
    box = mailbox.Maildir(tmp_path / "Maildir", create=True)
    box.add(dsn_for(mailserver, "tom@example.com"))
    out = io.StringIO()
    call_command("process_bounces", maildir=str(tmp_path / "Maildir"), stdout=out)
    assert out.getvalue() == (
        "1 processed: 1 hard bounces, 0 soft bounces, 0 complaints, 1 addresses "
        "suppressed, 0 without a message of ours; 0 unreadable, left in place.\n"
    )
    entry = DontSendEntry.objects.get()
    assert (entry.address, entry.reason) == ("tom@example.com", "bounced")
    assert entry.note.startswith("5.1.1 smtp; 550-5.1.1")
    tom = Message.all_objects.get(to_address="tom@example.com")
    log = MessageLog.objects.get(result=LogResult.BOUNCED)
    assert (log.message_pk, log.job_id, log.recipient) == (
        tom.pk,
        tom.job_id,
        "tom@example.com",
    )

    mailserver.reset()
    send_job(["ann@example.com", "tom@example.com"], subject="Issue 8")
    assert sorted(envelope_senders(mailserver)) == ["ann@example.com"]
    # Skipped at expansion (or at sending), and logged as such.
    assert MessageLog.objects.filter(
        recipient="tom@example.com",
        result__in=[LogResult.SKIPPED, LogResult.SUPPRESSED],
    ).exists()


def test_soft_bounces_suppress_only_after_the_limit(mailserver, verp_on, settings):
    settings.MAILER_SOFT_BOUNCE_LIMIT = 2
    send_job(["ann@example.com"])
    delayed = dsn_for(mailserver, "ann@example.com", "gmail/dsn-over-quota-delayed.eml")
    for expected in ([], ["ann@example.com"]):
        call_command("process_bounces", "-", stdin=io.BytesIO(delayed))
        assert list(DontSendEntry.objects.values_list("address", flat=True)) == expected
    assert MessageLog.objects.filter(result=LogResult.SOFT_BOUNCED).count() == 2
    assert "2 soft bounces within 7 days" in DontSendEntry.objects.get().note


def test_old_soft_bounces_do_not_count(mailserver, verp_on, settings):
    from datetime import timedelta

    from django.utils import timezone

    settings.MAILER_SOFT_BOUNCE_LIMIT = 2
    send_job(["ann@example.com"])
    delayed = dsn_for(mailserver, "ann@example.com", "gmail/dsn-over-quota-delayed.eml")
    call_command("process_bounces", "-", stdin=io.BytesIO(delayed))
    MessageLog.objects.filter(result=LogResult.SOFT_BOUNCED).update(
        created_at=timezone.now() - timedelta(days=8)
    )
    call_command("process_bounces", "-", stdin=io.BytesIO(delayed))
    assert not DontSendEntry.objects.exists()


@pytest.mark.parametrize(
    "name", ["outlook/arf-jmrp-complaint.eml", "yahoo/arf-abuse-redacted.eml"]
)
def test_a_complaint_suppresses_and_tells_the_site(mailserver, verp_on, name):
    heard = []

    def listener(sender, address, job, feedback_type, **kwargs):
        heard.append((address, job.subject if job else None, feedback_type))

    complained.connect(listener)
    try:
        send_job(["ann@example.com", "tom@example.com"])
        report = for_reader(
            name, "tom@example.com", envelope_senders(mailserver)["tom@example.com"]
        )
        if "redacted" in name:
            # Redacted recipient and original To: only the token is left.
            report = report.replace(b"To: tom@example.com", b"To: redacted")
        call_command("process_bounces", "-", stdin=io.BytesIO(report))
    finally:
        complained.disconnect(listener)
    entry = DontSendEntry.objects.get()
    assert (entry.address, entry.reason) == ("tom@example.com", "complained")
    assert heard == [("tom@example.com", "Issue 7", "abuse")]
    assert (
        MessageLog.objects.filter(
            result=LogResult.COMPLAINED, recipient="tom@example.com"
        ).count()
        == 1
    )


def test_a_forged_token_suppresses_nobody(mailserver, verp_on):
    send_job(["ann@example.com", "tom@example.com"])
    ann = envelope_senders(mailserver)["ann@example.com"]
    pk = verp.message_pk_from(ann)
    # Someone who knows the scheme but not SECRET_KEY: Tom's pk, Ann's MAC.
    forged = ann.replace(f"+m{pk}-", f"+m{pk + 1}-")
    assert verp.message_pk_from(forged) is None
    out = io.StringIO()
    call_command(
        "process_bounces", "-", stdout=out, stdin=io.BytesIO(
            for_reader("exim-4/dsn-550-user-unknown.eml", "tom@example.com", forged)
        ),
    )  # fmt: skip
    assert not DontSendEntry.objects.exists()
    assert not MessageLog.objects.filter(result=LogResult.BOUNCED).exists()
    assert ", 1 without a message of ours;" in out.getvalue()


def test_single_mail_dsn_maps_by_message_id_without_verp(mailserver):
    mailer.send_mail(
        "Reset", "Your link", "site@news.example",
        ["gone4@nouser.example", "gone5@nouser.example", "known@nouser.example"],
    )  # fmt: skip
    send_queued()
    message = Message.all_objects.get()
    data = sample("postfix-3.7/dsn-single-mail-two-recipients.eml").replace(
        b"<179608084022.30879.17373987349069456150@localhost>",
        message.message_id.encode(),
    )
    call_command("process_bounces", "-", stdin=io.BytesIO(data))
    assert sorted(DontSendEntry.objects.values_list("address", flat=True)) == [
        "gone4@nouser.example",
        "gone5@nouser.example",
    ]
    assert set(
        MessageLog.objects.filter(result=LogResult.BOUNCED).values_list(
            "message_pk", flat=True
        )
    ) == {message.pk}


def test_unreadable_mail_is_left_in_the_maildir_and_reported(tmp_path):
    box = mailbox.Maildir(tmp_path / "Maildir", create=True)
    key = box.add(sample("not-a-bounce.eml"))
    done = box.add(sample("exim-4/dsn-550-user-unknown.eml"))
    err = io.StringIO()
    call_command(
        "process_bounces", maildir=str(tmp_path / "Maildir"),
        stdout=io.StringIO(), stderr=err,
    )  # fmt: skip
    assert err.getvalue() == f"Unreadable, left in place: maildir:{key}\n"
    box = mailbox.Maildir(tmp_path / "Maildir", create=False)
    assert box.get_message(key).get_subdir() == "new"
    assert box.get_message(key).get_flags() == ""
    assert "S" in box.get_message(done).get_flags()
    assert len(box) == 2  # nothing deleted
    # A second run reads only what is left.
    err = io.StringIO()
    out = io.StringIO()
    call_command(
        "process_bounces", maildir=str(tmp_path / "Maildir"), stdout=out, stderr=err
    )
    assert out.getvalue().startswith("0 processed")


def test_stdin_with_unreadable_mail_exits_for_the_mta_to_keep_it():
    with pytest.raises(CommandError) as raised:
        call_command(
            "process_bounces", "-", stdin=io.BytesIO(sample("not-a-bounce.eml")),
            stdout=io.StringIO(), stderr=io.StringIO(),
        )  # fmt: skip
    assert raised.value.returncode == 75  # EX_TEMPFAIL: the MTA retries


@pytest.mark.django_db(transaction=True)
def test_the_pipe_alias_reads_one_bounce_from_real_stdin(
    mailserver, verp_on, worker_env
):
    send_job(["ann@example.com", "tom@example.com"])
    data = dsn_for(mailserver, "ann@example.com", "exim-4/dsn-550-user-unknown.eml")
    done = subprocess.run(
        [sys.executable, "-m", "django", "process_bounces", "-"],
        input=data, env=worker_env, cwd=ROOT, capture_output=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().startswith("1 processed: 1 hard bounces")
    assert DontSendEntry.objects.get().address == "ann@example.com"


# -- without the [bounces] extra ------------------------------------------------------
# A subprocess that cannot import flufl.bounce (tests/without.py), as on a site
# that set a bounce setting but did not install the extra.

NO_FLUFL = (
    "Reading bounces needs flufl.bounce, which is not installed "
    "(No module named 'flufl'): "
    'pip install "django-mailer-jobs[bounces]"'
)


@pytest.mark.parametrize(
    "name, value",
    [
        ("MAILER_BOUNCE_ADDRESS", BOUNCES),
        ("MAILER_BOUNCE_MAILDIR", "/var/mail/bounces"),
        ("MAILER_BOUNCE_IMAP", {"host": "imap.example", "user": "u", "password": "p"}),
    ],
)
def test_the_check_warns_of_the_missing_extra_once_a_bounce_setting_is_set(
    tmp_path, name, value
):
    done = run(settings_env(tmp_path, **{name: value}), "flufl", "check")
    # A warning: mail still goes out (VERP needs no library).
    assert done.returncode == 0
    assert (
        "(mailer.W031) A bounce setting is set, but process_bounces cannot run: "
        f"{NO_FLUFL}.\n"
    ) in done.stderr


def test_without_a_bounce_setting_the_missing_extra_goes_unmentioned(tmp_path):
    done = run(settings_env(tmp_path), "flufl", "check")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == "System check identified no issues (0 silenced).\n"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("source", ["-", "--maildir"])
def test_process_bounces_without_the_extra_stops_naming_it_and_reads_nothing(
    mailserver, verp_on, worker_env, tmp_path, source
):
    send_job(["ann@example.com"])
    data = dsn_for(mailserver, "ann@example.com", "exim-4/dsn-550-user-unknown.eml")
    env = settings_env(tmp_path, worker_env, MAILER_BOUNCE_ADDRESS=BOUNCES)
    box = mailbox.Maildir(tmp_path / "Maildir", create=True)
    key = box.add(data)
    if source == "-":
        done = run(env, "flufl", "process_bounces", "-", input=data)
        # EX_TEMPFAIL: the MTA keeps the mail and tries again later.
        assert done.returncode == 75
    else:
        done = run(
            env, "flufl", "process_bounces", "--maildir", str(tmp_path / "Maildir")
        )
        assert done.returncode == 1
    assert done.stderr.endswith(f"\nCommandError: {NO_FLUFL}\n")
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    assert not DontSendEntry.objects.exists()
    # Left as it came: unread, in new/.
    kept = mailbox.Maildir(tmp_path / "Maildir", create=False).get_message(key)
    assert (kept.get_subdir(), kept.get_flags()) == ("new", "")


# -- IMAP (a real Dovecot) ----------------------------------------------------------


@pytest.fixture(scope="module")
def dovecot():
    from tests.dovecot import DOVECOT, TemporaryDovecot

    if DOVECOT is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Dovecot is missing in CI (.ci/run installs dovecot-imapd)")
        pytest.skip("Dovecot is not installed (apt-get install dovecot-imapd)")
    with TemporaryDovecot() as server:
        yield server


def imap_config(server, **extra) -> dict:
    return {
        "host": server.host,
        "port": server.port,
        "user": server.user,
        "password": server.password,
        "cafile": server.cafile,
        "timeout": 10,
        **extra,
    }


def imap(server) -> imaplib.IMAP4_SSL:
    context = ssl.create_default_context(cafile=server.cafile)
    client = imaplib.IMAP4_SSL(
        server.host, server.port, ssl_context=context, timeout=10
    )
    client.login(server.user, server.password)
    return client


def mailbox_state(server, folder: str) -> list[tuple[bytes, bytes]]:
    """(flags, subject line) of every mail in ``folder``."""
    with imap(server) as client:
        client.select(f'"{folder}"', readonly=True)
        _, data = client.uid("SEARCH", None, "ALL")
        state = []
        for uid in (data[0] or b"").split():
            _, parts = client.uid(
                "FETCH", uid, "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])"
            )
            state.append((parts[0][0], parts[0][1].strip()))
        return state


def empty(server, *folders: str) -> None:
    with imap(server) as client:
        for folder in folders:
            if client.select(f'"{folder}"')[0] == "OK":
                client.uid("STORE", "1:*", "+FLAGS", "(\\Deleted)")
                client.expunge()


def test_imap_bounces_are_processed_and_moved_unreadable_left_unseen(
    mailserver, verp_on, dovecot, settings
):
    empty(dovecot, "INBOX", "Processed")
    send_job(["ann@example.com", "tom@example.com"])
    with imap(dovecot) as client:
        for data in (
            dsn_for(
                mailserver, "tom@example.com", "outlook/dsn-mailbox-unavailable.eml"
            ),
            sample("not-a-bounce.eml"),
        ):
            assert client.append("INBOX", None, None, data)[0] == "OK"
    settings.MAILER_BOUNCE_IMAP = imap_config(dovecot, processed_folder="Processed")
    out, err = io.StringIO(), io.StringIO()
    call_command("process_bounces", imap=True, stdout=out, stderr=err)
    assert out.getvalue().startswith("1 processed: 1 hard bounces")
    assert err.getvalue() == "Unreadable, left in place: imap:INBOX/2\n"
    assert DontSendEntry.objects.get().address == "tom@example.com"
    # The bounce moved (seen) to Processed, the reply stays unseen in INBOX.
    inbox = mailbox_state(dovecot, "INBOX")
    assert [subject for _, subject in inbox] == [b"Subject: Re: Issue 7"]
    assert b"\\Seen" not in inbox[0][0]
    [(flags, subject)] = mailbox_state(dovecot, "Processed")
    assert subject == b"Subject: Undeliverable: Issue 7"
    assert b"\\Seen" in flags


def test_imap_without_a_processed_folder_marks_seen(
    mailserver, verp_on, dovecot, settings
):
    empty(dovecot, "INBOX")
    send_job(["ann@example.com"])
    with imap(dovecot) as client:
        client.append("INBOX", None, None, dsn_for(mailserver, "ann@example.com"))
    settings.MAILER_BOUNCE_IMAP = imap_config(dovecot)
    call_command("process_bounces", imap=True, stdout=io.StringIO())
    [(flags, _)] = mailbox_state(dovecot, "INBOX")
    assert b"\\Seen" in flags
    assert DontSendEntry.objects.get().address == "ann@example.com"
    # A second run finds nothing new.
    out = io.StringIO()
    call_command("process_bounces", imap=True, stdout=out)
    assert out.getvalue().startswith("0 processed")


def test_imap_with_a_wrong_password_is_a_clear_error(dovecot, settings):
    settings.MAILER_BOUNCE_IMAP = imap_config(dovecot, password="wrong")
    with pytest.raises(
        CommandError, match=r"IMAP 127\.0\.0\.1: .*AUTHENTICATIONFAILED"
    ):
        call_command("process_bounces", imap=True)


def test_imap_refuses_a_certificate_it_cannot_verify(dovecot, settings):
    settings.MAILER_BOUNCE_IMAP = imap_config(dovecot, cafile=None)
    with pytest.raises(CommandError, match="CERTIFICATE_VERIFY_FAILED"):
        call_command("process_bounces", imap=True)


# -- end to end -----------------------------------------------------------------------


def test_end_to_end_one_bounce_through_each_of_imap_maildir_and_stdin(
    mailserver, verp_on, dovecot, settings, tmp_path
):
    import dkim

    from mailer.sending.dkim import public_txt
    from tests.sending.test_dkim import write_key

    settings.MAILER_DKIM_KEY_FILE = write_key(tmp_path / "k.pem", "ed25519")
    settings.MAILER_DKIM_DOMAIN = "news.example"
    record = public_txt(settings.MAILER_DKIM_KEY_FILE)

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes | None:
        return record if name == b"mailer._domainkey.news.example." else None

    empty(dovecot, "INBOX")
    readers = ["ann@example.com", "bob@example.com", "cy@example.com", "di@example.com"]
    send_job(readers)
    senders = envelope_senders(mailserver)
    mailer.send_mail("Reset", "Your link\n", "site@news.example", ["ann@example.com"])
    send_queued()
    assert len(mailserver.messages) == 5
    for received in mailserver.messages:
        assert dkim.verify(received.data, dnsfunc=dnsfunc)
        assert verp.message_pk_from(received.mail_from) is not None

    def dsn(reader: str, name: str) -> bytes:
        return for_reader(name, reader, senders[reader])

    with imap(dovecot) as client:
        client.append(
            "INBOX", None, None,
            dsn("ann@example.com", "gmail/dsn-account-does-not-exist.eml"),
        )  # fmt: skip
    settings.MAILER_BOUNCE_IMAP = imap_config(dovecot)
    call_command("process_bounces", imap=True, stdout=io.StringIO())
    mailbox.Maildir(tmp_path / "md", create=True).add(
        dsn("bob@example.com", "exim-4/dsn-550-user-unknown.eml")
    )
    call_command("process_bounces", maildir=str(tmp_path / "md"), stdout=io.StringIO())
    call_command(
        "process_bounces", "-", stdout=io.StringIO(),
        stdin=io.BytesIO(dsn("cy@example.com", "yahoo/old-form-no-account.eml")),
    )  # fmt: skip
    assert sorted(DontSendEntry.objects.values_list("address", "reason")) == [
        ("ann@example.com", SuppressionReason.BOUNCED),
        ("bob@example.com", SuppressionReason.BOUNCED),
        ("cy@example.com", SuppressionReason.BOUNCED),
    ]
    mailserver.reset()
    send_job(readers, subject="Issue 8")
    assert sorted(envelope_senders(mailserver)) == ["di@example.com"]


def test_an_esp_complaint_through_anymail_sends_the_same_signal():
    from anymail.signals import AnymailTrackingEvent, tracking

    from mailer.integrations import connect_anymail

    connect_anymail()
    heard = []

    def listener(sender, address, job, feedback_type, **kwargs):
        heard.append((address, job, feedback_type))

    complained.connect(listener)
    try:
        event = AnymailTrackingEvent(
            event_type="complained", recipient="Ann@Example.com"
        )
        tracking.send(sender=object, event=event, esp_name="TestESP")
    finally:
        complained.disconnect(listener)
    assert heard == [("ann@example.com", None, "abuse")]
    assert DontSendEntry.objects.get().reason == SuppressionReason.COMPLAINED
