"""The SMTP test server itself, driven with plain smtplib.

No Django here (no settings, no database), so this file also runs with
``-p no:django``; the rest of the suite trusts these behaviours.
"""

from __future__ import annotations

import os
import smtplib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailer.testing.smtp import SMTPTestServer

ROOT = Path(__file__).resolve().parent.parent.parent

MESSAGE = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: Hi\r\n\r\nHello.\r\n"


@pytest.fixture
def server() -> Iterator[SMTPTestServer]:
    with SMTPTestServer() as smtp:
        yield smtp


def connect(server: SMTPTestServer) -> smtplib.SMTP:
    return smtplib.SMTP(server.host, server.port, timeout=5)


def test_accepts_mail_and_records_the_exact_bytes(server: SMTPTestServer) -> None:
    with connect(server) as client:
        client.sendmail("a@example.com", ["b@example.com", "c@example.com"], MESSAGE)

    assert server.wait_for(1, timeout=5)
    [received] = server.messages
    assert received.mail_from == "a@example.com"
    assert received.rcpt_tos == ["b@example.com", "c@example.com"]
    assert received.data == MESSAGE
    assert received.message["Subject"] == "Hi"
    assert received.session_id == 1
    assert server.connections == 1
    assert server.count == 1
    assert server.counts == {"b@example.com": 1, "c@example.com": 1}


def test_utf8_addresses_and_8bit_bodies_arrive_intact(server: SMTPTestServer) -> None:
    body = "Subject: Grüße\r\n\r\nDéjà vu.\r\n".encode()
    with connect(server) as client:
        client.sendmail("a@example.com", ["jürgen@exämple.com"], body, ["SMTPUTF8"])

    [received] = server.messages
    assert received.rcpt_tos == ["jürgen@exämple.com"]
    assert received.data == body
    assert received.message["Subject"] == "Grüße"


def test_rejected_recipient_gets_550_at_rcpt_and_the_others_get_the_mail(
    server: SMTPTestServer,
) -> None:
    server.reject(["Gone@Example.com"])  # matched case-insensitively

    with connect(server) as client:
        refused = client.sendmail(
            "a@example.com", ["gone@example.COM", "b@example.com"], MESSAGE
        )

    assert refused == {"gone@example.COM": (550, b"5.1.1 No such user")}
    [received] = server.messages
    assert received.rcpt_tos == ["b@example.com"]


def test_deferral_with_times_1_refuses_the_first_attempt_then_accepts(
    server: SMTPTestServer,
) -> None:
    server.defer("busy@example.com", times=1)

    with connect(server) as client:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            client.sendmail("a@example.com", ["busy@example.com"], MESSAGE)
        assert refused.value.recipients == {
            "busy@example.com": (451, b"4.3.0 Try again later")
        }
        client.sendmail("a@example.com", ["busy@example.com"], MESSAGE)

    assert [m.rcpt_tos for m in server.messages] == [["busy@example.com"]]


def test_deferral_without_times_never_ends(server: SMTPTestServer) -> None:
    server.defer("busy@example.com", code=452, reply="4.2.2 Mailbox full")

    with connect(server) as client:
        for _ in range(3):
            with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
                client.sendmail("a@example.com", ["busy@example.com"], MESSAGE)
            assert refused.value.recipients["busy@example.com"][0] == 452
    assert server.count == 0


def test_disconnect_after_k_messages_drops_the_connection_and_a_reconnect_works(
    server: SMTPTestServer,
) -> None:
    server.disconnect_after(2)

    with connect(server) as client:
        client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
        client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    with connect(server) as client:
        client.sendmail("a@example.com", ["b@example.com"], MESSAGE)

    assert [m.session_id for m in server.messages] == [1, 1, 2]
    assert server.connections == 2


def test_reply_421_after_k_messages_refuses_the_next_mail_from_and_closes(
    server: SMTPTestServer,
) -> None:
    server.reply_421_after(1)

    client = connect(server)
    try:
        client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
        assert refused.value.smtp_code == 421
        assert refused.value.smtp_error == b"4.7.0 Closing connection"
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.noop()
    finally:
        client.close()
    assert server.count == 1


def test_delay_holds_the_reply_to_data(server: SMTPTestServer) -> None:
    server.delay(0.3)

    with connect(server) as client:
        started = time.monotonic()
        client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
        assert time.monotonic() - started >= 0.3


def test_stop_refuses_connections_and_start_listens_on_the_same_port(
    server: SMTPTestServer,
) -> None:
    port = server.port
    open_client = connect(server)
    open_client.ehlo()

    server.stop()

    with pytest.raises(smtplib.SMTPServerDisconnected):
        open_client.noop()
    open_client.close()
    with pytest.raises(ConnectionRefusedError):
        connect(server)

    server.start()

    assert server.port == port
    with connect(server) as client:
        client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    assert server.count == 1


def test_wait_for_returns_false_on_timeout_and_true_once_mail_arrives(
    server: SMTPTestServer,
) -> None:
    assert server.wait_for(1, timeout=0.05) is False

    def send_later() -> None:
        time.sleep(0.1)
        with connect(server) as client:
            client.sendmail("a@example.com", ["b@example.com"], MESSAGE)

    sender = threading.Thread(target=send_later)
    sender.start()
    try:
        assert server.wait_for(1, timeout=5) is True
    finally:
        sender.join(timeout=5)


def test_reset_forgets_mail_and_behaviours(server: SMTPTestServer) -> None:
    server.reject("b@example.com")
    with connect(server) as client:
        client.sendmail("a@example.com", ["b@example.com", "c@example.com"], MESSAGE)

    server.reset()

    assert (server.messages, server.count, server.connections) == ([], 0, 0)
    with connect(server) as client:
        assert client.sendmail("a@example.com", ["b@example.com"], MESSAGE) == {}
    assert server.messages[0].session_id == 1


def test_sink_mode_counts_without_keeping_messages() -> None:
    with SMTPTestServer(keep_data=False) as sink:
        with connect(sink) as client:
            for _ in range(3):
                client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
        assert sink.wait_for(3, timeout=5)
        assert sink.messages == []
        assert sink.counts == {"b@example.com": 3}


def test_null_sender_is_recorded_as_an_empty_string(server: SMTPTestServer) -> None:
    with connect(server) as client:
        client.sendmail("", ["b@example.com"], MESSAGE)
    assert server.messages[0].mail_from == ""


def test_importing_without_aiosmtpd_explains_what_to_install() -> None:
    code = (
        "import sys; sys.modules['aiosmtpd'] = None\n"
        "try:\n    import mailer.testing.smtp\n"
        "except ImportError as e:\n    print(e)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert 'pip install "django-mailer-jobs[testing]"' in result.stdout


def test_connections_send_each_reply_at_once_without_nagle(
    server: SMTPTestServer,
) -> None:
    """TCP_NODELAY on every accepted connection: with Nagle's algorithm on, a
    reply written right after another (a multi-line EHLO, the replies to a
    pipelined group) waits for the client's delayed ACK, about 40 ms each."""
    import socket

    with smtplib.SMTP("127.0.0.1", server.port) as client:
        client.ehlo()
        (sock,) = server.open_sockets()
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
