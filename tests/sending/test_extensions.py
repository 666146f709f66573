"""What the relay's EHLO offers decides the MAIL FROM parameters: SIZE is
honoured before DATA, 8-bit bodies are declared, SMTPUTF8 is used or the
message refused clearly; the greeting names the site; a private CA is
trusted through MAILER_SSL_CA_FILE, and without it the run stops cleanly."""

from __future__ import annotations

import shutil
import smtplib
import subprocess
from pathlib import Path

import django
import pytest

import mailer
from mailer.models import LogResult, Message, MessageLog, MessageStatus
from mailer.sending import extensions
from mailer.sending.engine import send_queued
from mailer.sending.extensions import ExtensionRefused, mail_options

pytestmark = pytest.mark.django_db

ASCII = b"Subject: hi\r\n\r\nplain\r\n"
EIGHT_BIT = "Subject: hi\r\n\r\nGrüße\r\n".encode()


@pytest.fixture
def smtp(smtp_server):
    """A plain smtplib connection to the test server, opened lazily so each
    test can change what the server advertises first."""
    opened = []

    def connect() -> smtplib.SMTP:
        connection = smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=10)
        opened.append(connection)
        return connection

    yield connect
    for connection in opened:
        connection.close()


# -- the options, against a real EHLO ------------------------------------------------


def test_plain_mail_needs_no_option(smtp):
    assert mail_options(smtp(), ASCII, "a@example.com", ["b@example.com"]) == []


def test_an_8bit_body_is_declared_when_the_relay_offers_8bitmime(smtp_server, smtp):
    assert mail_options(smtp(), EIGHT_BIT, "a@example.com", ["b@example.com"]) == [
        "BODY=8BITMIME"
    ]
    smtp_server.advertise(eightbitmime=False)
    assert mail_options(smtp(), EIGHT_BIT, "a@example.com", ["b@example.com"]) == []


def test_a_non_ascii_local_part_needs_smtputf8(smtp_server, smtp):
    assert mail_options(smtp(), ASCII, "a@example.com", ["jörg@example.com"]) == [
        "SMTPUTF8"
    ]
    # A non-ASCII domain alone goes in punycode: no SMTPUTF8 needed.
    assert mail_options(smtp(), ASCII, "a@example.com", ["j@bücher.example"]) == []
    smtp_server.advertise(smtputf8=False)
    with pytest.raises(ExtensionRefused) as refused:
        mail_options(smtp(), ASCII, "a@example.com", ["b@x.org", "jörg@example.com"])
    assert str(refused.value) == (
        "jörg@example.com: a non-ASCII local part needs SMTPUTF8 (RFC 6531), "
        "which 127.0.0.1 does not offer"
    )


def test_a_message_over_the_advertised_size_is_refused_before_data(smtp_server, smtp):
    smtp_server.advertise(size=1000)
    assert mail_options(smtp(), b"x" * 1000, "a@example.com", ["b@x.org"]) == []
    with pytest.raises(ExtensionRefused, match="1,001 bytes, over the 1,000 bytes"):
        mail_options(smtp(), b"x" * 1001, "a@example.com", ["b@x.org"])


@pytest.mark.parametrize(
    "helo, site, expected",
    [
        ("mx.example.org", "https://news.example.com", "mx.example.org"),
        (None, "https://news.example.com:8443/path", "news.example.com"),
        (None, "https://bücher.example", "xn--bcher-kva.example"),
    ],
)
def test_the_greeting_names_the_site(settings, helo, site, expected):
    settings.MAILER_HELO_NAME = helo
    settings.MAILER_SITE_URL = site
    assert extensions.helo_name() == expected


def test_without_a_site_the_greeting_falls_back_to_djangos_dns_name(settings):
    from django.core.mail.utils import DNS_NAME

    settings.MAILER_HELO_NAME = None
    settings.MAILER_SITE_URL = None
    assert extensions.helo_name() == DNS_NAME.get_fqdn()


# -- through the engine ---------------------------------------------------------------


def test_the_relay_is_greeted_with_the_site_host_and_8bit_mail_declared(mailserver):
    mailer.send_mail("Grüße", "Schöne Grüße aus Köln", "news@example.com", ["a@x.org"])
    assert not bytes(Message.all_objects.get().mime).isascii()

    assert send_queued().sent == 1

    (received,) = mailserver.messages
    assert received.helo_name == "news.example.com"  # MAILER_SITE_URL's host
    assert "BODY=8BITMIME" in received.mail_options
    assert "Schöne Grüße" in received.message.get_content()


def test_ascii_mail_goes_without_body_option(mailserver):
    mailer.send_mail("Hello", "plain text", "news@example.com", ["a@x.org"])
    assert send_queued().sent == 1
    assert not any(o.startswith("BODY") for o in mailserver.messages[0].mail_options)


def test_a_non_ascii_local_part_goes_with_smtputf8(mailserver):
    mailer.send_mail("Hallo", "Hallo Jörg", "news@example.com", ["jörg@example.com"])

    assert send_queued().sent == 1

    (received,) = mailserver.messages
    assert received.rcpt_tos == ["jörg@example.com"]
    assert "SMTPUTF8" in received.mail_options


def test_without_smtputf8_such_mail_fails_clearly_and_the_rest_goes(mailserver):
    mailserver.advertise(smtputf8=False)
    mailer.send_mail("Hallo", "Hallo Jörg", "news@example.com", ["jörg@example.com"])
    mailer.send_mail("Hello", "Hello Ann", "news@example.com", ["ann@example.com"])

    result = send_queued()

    assert (result.sent, result.failed, result.deferred) == (1, 1, 0)
    assert list(mailserver.counts) == ["ann@example.com"]
    failed = MessageLog.objects.get(result=LogResult.FAILED)
    assert failed.reply == (
        "cannot send: jörg@example.com: a non-ASCII local part needs SMTPUTF8 "
        "(RFC 6531), which 127.0.0.1 does not offer"
    )


def test_a_message_over_the_relays_size_fails_before_data(mailserver):
    mailserver.advertise(size=5000)
    mailer.send_mail("Big", "y" * 8000, "news@example.com", ["big@example.com"])
    mailer.send_mail("Small", "small", "news@example.com", ["small@example.com"])

    result = send_queued()

    assert (result.sent, result.failed) == (1, 1)
    assert list(mailserver.counts) == ["small@example.com"]
    big = Message.all_objects.get(to_address="big@example.com")
    assert (big.status, big.attempts) == (MessageStatus.FAILED, 1)
    (log,) = MessageLog.objects.filter(message_pk=big.pk)
    assert log.smtp_code is None
    assert "over the 5,000 bytes 127.0.0.1 accepts (its EHLO SIZE)" in log.reply


# -- TLS with a private CA -------------------------------------------------------------


def _make_ca(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a certificate for 127.0.0.1 it signed (openssl)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")

    def run(*args: str) -> None:
        subprocess.run(
            ["openssl", *args], cwd=directory, check=True, capture_output=True
        )

    run(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=Mailer Test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    run(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "relay.key",
        "-out", "relay.csr", "-subj", "/CN=127.0.0.1",
    )  # fmt: skip
    (directory / "relay.cnf").write_text(
        "subjectAltName=IP:127.0.0.1\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n"
    )
    run(
        "x509", "-req", "-in", "relay.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-set_serial", "2", "-days", "2", "-out", "relay.pem",
        "-extfile", "relay.cnf",
    )  # fmt: skip
    return directory / "ca.pem", directory / "relay.pem", directory / "relay.key"


def _use_starttls(settings) -> None:
    if django.VERSION >= (6, 1):
        alias = settings.MAILER_SEND_USING
        mailers = {**settings.MAILERS}
        mailers[alias] = {
            **mailers[alias],
            "OPTIONS": {**mailers[alias]["OPTIONS"], "use_tls": True},
        }
        settings.MAILERS = mailers
    else:
        settings.EMAIL_USE_TLS = True


@pytest.fixture
def private_ca_relay(settings, mailserver, tmp_path):
    ca, cert, key = _make_ca(tmp_path)
    mailserver.enable_starttls(str(cert), str(key))
    _use_starttls(settings)
    return ca


def test_a_private_ca_relay_stops_cleanly_without_the_ca_setting(
    settings, mailserver, private_ca_relay
):
    settings.MAILER_SSL_CA_FILE = None
    mailer.send_mail("Hi", "b", "news@example.com", ["a@x.org"])

    result = send_queued()

    assert (result.sent, result.failed, result.stop_reason) == (
        0,
        0,
        "mail server unreachable",
    )
    assert (
        f"TLS certificate of 127.0.0.1:{mailserver.port} not trusted: "
        "CERTIFICATE_VERIFY_FAILED (" in result.error
    )
    assert "set MAILER_SSL_CA_FILE" in result.error
    assert mailserver.count == 0
    message = Message.all_objects.get()
    assert (message.attempts, message.claim_token) == (0, None)


def test_mailer_ssl_ca_file_trusts_the_private_ca(
    settings, mailserver, private_ca_relay
):
    settings.MAILER_SSL_CA_FILE = str(private_ca_relay)
    mailer.send_mail("Hi", "over TLS", "news@example.com", ["a@x.org"])

    result = send_queued()

    assert (result.sent, result.failed) == (1, 0), result.error
    (received,) = mailserver.messages
    assert received.message.get_content().strip() == "over TLS"
    assert received.helo_name == "news.example.com"


def test_a_wrong_ca_file_still_fails_verification(
    settings, mailserver, private_ca_relay, tmp_path
):
    other = tmp_path / "other"
    other.mkdir()
    wrong_ca, _cert, _key = _make_ca(other)
    settings.MAILER_SSL_CA_FILE = str(wrong_ca)
    mailer.send_mail("Hi", "b", "news@example.com", ["a@x.org"])

    result = send_queued()

    assert result.sent == 0
    assert "CERTIFICATE_VERIFY_FAILED" in result.error
    assert f"check that MAILER_SSL_CA_FILE ({wrong_ca})" in result.error
