"""DKIM signing at send time (issue 18): the signature on job and single mail,
received through the real SMTP server, verifies with dkimpy's verifier
against the public key a stub DNS lookup serves; the system check reports a
bad key."""

from __future__ import annotations

import email

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from django.core.checks import run_checks

import mailer
from mailer.jobs.expand import expand_pending_jobs
from mailer.jobs.services import RenderedEmail, create_job
from mailer.sending.dkim import load_key, public_txt
from mailer.sending.engine import send_queued
from tests.without import run, settings_env

pytestmark = pytest.mark.django_db

SELECTOR = "mail2026"
DOMAIN = "news.example"


def write_key(path, kind: str, bits: int = 2048) -> str:
    if kind == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    else:
        key = ed25519.Ed25519PrivateKey.generate()
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(path)


@pytest.fixture(params=["rsa", "ed25519"])
def signing(request, settings, tmp_path):
    """DKIM on with a fresh key; returns the stub DNS lookup serving its
    public half at <selector>._domainkey.<domain>."""
    path = write_key(tmp_path / "dkim.pem", request.param)
    settings.MAILER_DKIM_KEY_FILE = path
    settings.MAILER_DKIM_SELECTOR = SELECTOR
    settings.MAILER_DKIM_DOMAIN = DOMAIN
    record = public_txt(path)
    asked = []

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes | None:
        asked.append(name)
        return record if name == f"{SELECTOR}._domainkey.{DOMAIN}.".encode() else None

    dnsfunc.asked = asked
    dnsfunc.algorithm = request.param
    return dnsfunc


def signed_headers(data: bytes) -> list[str]:
    signature = email.message_from_bytes(data)["DKIM-Signature"]
    tags = dict(
        part.strip().split("=", 1) for part in "".join(signature.split()).split(";")
    )
    return tags["h"].split(":"), tags


def test_job_mail_is_signed_and_verifies(mailserver, signing):
    create_job(
        content=RenderedEmail(
            subject="Issue 7 for [[mj:name]]", body_text="Dear [[mj:name]]\n"
        ),
        recipients=[{"email": "ann@example.com", "name": "Ann"}],
        from_email="The Daily <news@news.example>",
    )
    expand_pending_jobs()
    assert send_queued().sent == 1
    [received] = mailserver.messages
    assert dkim.verify(received.data, dnsfunc=signing)
    assert signing.asked == [b"mail2026._domainkey.news.example."]
    headers, tags = signed_headers(received.data)
    assert tags["d"] == DOMAIN and tags["s"] == SELECTOR
    assert tags["a"] == (
        "rsa-sha256" if signing.algorithm == "rsa" else "ed25519-sha256"
    )
    lowered = [h.lower() for h in headers]
    for name in ("from", "to", "subject", "date", "message-id",
                 "list-unsubscribe", "list-unsubscribe-post"):  # fmt: skip
        assert name in lowered
    # The personalised subject is what was signed: changing it breaks it.
    tampered = received.data.replace(b"Issue 7 for Ann", b"Issue 7 for Bob")
    assert tampered != received.data
    assert not dkim.verify(tampered, dnsfunc=signing)


def test_single_mail_is_signed_and_verifies(mailserver, signing):
    mailer.send_mail("Reset", "Your link\n", "site@news.example", ["ann@example.com"])
    send_queued()
    [received] = mailserver.messages
    assert dkim.verify(received.data, dnsfunc=signing)
    headers, _ = signed_headers(received.data)
    assert "list-unsubscribe" not in [h.lower() for h in headers]  # absent: unsigned
    assert not dkim.verify(
        received.data.replace(b"Your link", b"Evil link"), dnsfunc=signing
    )


def test_without_a_key_nothing_is_signed(mailserver):
    mailer.send_mail("Reset", "Your link", "site@news.example", ["ann@example.com"])
    send_queued()
    assert b"DKIM-Signature" not in mailserver.messages[0].data


def errors(ids=("mailer.E030", "mailer.E031")):
    return [(e.id, e.msg) for e in run_checks() if e.id in ids]


def test_the_check_reports_a_missing_key(settings, tmp_path):
    settings.MAILER_DKIM_KEY_FILE = str(tmp_path / "nope.pem")
    settings.MAILER_DKIM_DOMAIN = DOMAIN
    assert errors() == [
        (
            "mailer.E030",
            f"MAILER_DKIM_KEY_FILE: cannot read {tmp_path / 'nope.pem'}: "
            "No such file or directory.",
        )
    ]


def test_the_check_reports_a_short_rsa_key_and_no_domain(settings, tmp_path):
    settings.MAILER_DKIM_KEY_FILE = write_key(tmp_path / "short.pem", "rsa", 1024)
    assert errors() == [
        (
            "mailer.E030",
            f"MAILER_DKIM_KEY_FILE: {tmp_path / 'short.pem'}: RSA key of 1024 bits, "
            "need 2048+.",
        ),
        ("mailer.E030", "MAILER_DKIM_DOMAIN is not set."),
    ]


def test_the_check_reports_a_file_that_is_no_key(settings, tmp_path):
    (tmp_path / "cert.pem").write_text("-----BEGIN CERTIFICATE-----\nxx\n")
    settings.MAILER_DKIM_KEY_FILE = str(tmp_path / "cert.pem")
    settings.MAILER_DKIM_DOMAIN = DOMAIN
    [(_, message)] = errors()
    assert message.endswith("is no unencrypted PEM private key.")


def test_the_check_passes_a_good_key_and_reports_a_plus_in_the_bounce_address(
    settings, tmp_path
):
    settings.MAILER_DKIM_KEY_FILE = write_key(tmp_path / "ok.pem", "ed25519")
    settings.MAILER_DKIM_DOMAIN = DOMAIN
    settings.MAILER_BOUNCE_ADDRESS = "bounces+x@news.example"
    assert [id for id, _ in errors()] == ["mailer.E031"]
    assert load_key(settings.MAILER_DKIM_KEY_FILE).algorithm == b"ed25519-sha256"


def test_a_key_that_vanishes_stops_the_run_and_keeps_the_mail(mailserver, signing):
    from pathlib import Path

    from django.conf import settings

    from mailer.models import Message, MessageStatus

    mailer.send_mail("Reset", "Your link\n", "site@news.example", ["ann@example.com"])
    Path(settings.MAILER_DKIM_KEY_FILE).unlink()
    result = send_queued()
    assert result.stop_reason == "DKIM key"
    assert result.error.startswith("DKIM: cannot read ")
    assert result.failed == 0
    assert result.released == 1
    assert mailserver.messages == []
    message = Message.all_objects.get()
    assert message.status == MessageStatus.QUEUED
    assert message.attempts == 0
    assert message.claim_token is None


# -- without the [dkim] extra -------------------------------------------------------
# A subprocess that cannot import dkimpy or cryptography (tests/without.py), as
# on a site that set MAILER_DKIM_KEY_FILE but did not install the extra.

DKIM_EXTRA = 'pip install "django-mailer-jobs[dkim]"'


def not_installed(module: str) -> str:
    return (
        "DKIM signing (MAILER_DKIM_KEY_FILE) needs dkimpy and cryptography, "
        f"which are not installed (No module named '{module}'): "
        f"{DKIM_EXTRA}"
    )


@pytest.mark.parametrize("missing", ["dkim", "cryptography"])
def test_the_check_names_the_dkim_extra_when_it_is_not_installed(tmp_path, missing):
    env = settings_env(
        tmp_path,
        MAILER_DKIM_KEY_FILE=write_key(tmp_path / "dkim.pem", "ed25519"),
        MAILER_DKIM_DOMAIN=DOMAIN,
    )
    done = run(env, missing, "check")
    assert done.returncode == 1
    assert f"(mailer.E030) {not_installed(missing)}.\n" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.django_db(transaction=True)
def test_sending_without_the_dkim_extra_stops_the_run_and_keeps_the_mail(
    mailserver, worker_env, settings, tmp_path
):
    from mailer.models import Message, MessageStatus

    key = write_key(tmp_path / "dkim.pem", "ed25519")
    env = settings_env(
        tmp_path, worker_env, MAILER_DKIM_KEY_FILE=key, MAILER_DKIM_DOMAIN=DOMAIN
    )
    mailer.send_mail("Reset", "Your link\n", "site@news.example", ["ann@example.com"])
    # The system check stops send_mail (as every command) before it starts...
    checked = run(env, "dkim", "send_mail")
    assert checked.returncode == 1
    assert f"(mailer.E030) {not_installed('dkim')}." in checked.stderr
    # ...and past the check, the run stops at the first message, naming the
    # extra: exit status 2 for cron, nothing sent, no attempt used.
    done = run(env, "dkim", "send_mail", "--skip-checks")
    assert done.returncode == 2
    assert "stopped: improperly configured" in done.stdout
    assert done.stderr == f"CommandError: {not_installed('dkim')}\n"
    assert mailserver.messages == []
    message = Message.all_objects.get()
    assert (message.status, message.attempts) == (MessageStatus.QUEUED, 0)
    # Its claim was given back: with the extra, the mail goes out, signed.
    settings.MAILER_DKIM_KEY_FILE = key
    settings.MAILER_DKIM_DOMAIN = DOMAIN
    assert send_queued().sent == 1
    [received] = mailserver.messages
    assert b"DKIM-Signature: " in received.data
