"""One message's staged SMTP exchange (mailer.sending.transport) against the
real test server: who was accepted and refused, ESMTP options on the wire,
and where a failure happened (before the final "." = safe, after = in doubt)."""

from __future__ import annotations

import smtplib
import time

import pytest

from mailer.sending import transport

MESSAGE = b"From: a@example.com\r\nSubject: Hi\r\n\r\n.leading dot\r\nbody\r\n"


@pytest.fixture
def smtp(smtp_server):
    client = smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=5)
    yield client
    client.close()


def send(client, recipients, *, budget=2.0, **options):
    return transport.exchange(
        client,
        "a@example.com",
        recipients,
        MESSAGE,
        deadline=time.monotonic() + budget,
        budget=budget,
        **options,
    )


def test_accepted_and_refused_recipients_and_the_dot_stuffed_content(smtp, smtp_server):
    smtp_server.reject(["gone@example.com"], reply="5.1.1 No such user")

    done = send(smtp, ["ann@example.com", "gone@example.com"])

    assert done.accepted == ["ann@example.com"]
    assert done.refused == {"gone@example.com": (550, b"5.1.1 No such user")}
    assert (done.code, done.stage) == (250, transport.FINAL_REPLY)
    [received] = smtp_server.messages
    assert received.data == MESSAGE  # the server undid the dot-stuffing
    assert received.rcpt_tos == ["ann@example.com"]


def test_mail_and_rcpt_options_reach_the_server(smtp, smtp_server):
    send(
        smtp,
        ["ann@example.com", "bob@example.com"],
        mail_options=["BODY=8BITMIME", f"SIZE={len(MESSAGE)}"],
    )

    [received] = smtp_server.messages
    assert received.mail_options == ["BODY=8BITMIME", f"SIZE={len(MESSAGE)}"]
    assert received.rcpt_options == []


def test_every_recipient_refused_raises_with_each_reply(smtp, smtp_server):
    smtp_server.defer(["busy@example.com"], code=450, reply="4.2.0 Busy")
    with pytest.raises(smtplib.SMTPRecipientsRefused) as raised:
        send(smtp, ["busy@example.com"])
    assert raised.value.recipients == {"busy@example.com": (450, b"4.2.0 Busy")}
    # The transaction was reset: the connection takes the next message.
    assert send(smtp, ["ann@example.com"]).accepted == ["ann@example.com"]


def test_a_reset_after_the_final_dot_is_in_doubt(smtp, smtp_server):
    smtp_server.reset_after_data(times=1)
    with pytest.raises(transport.InDoubt) as raised:
        send(smtp, ["ann@example.com"])
    assert raised.value.stage == transport.FINAL_REPLY
    assert smtp_server.count == 1  # the relay has it
    assert "may have accepted it" in str(raised.value)


def test_a_stalled_final_reply_is_in_doubt_after_the_budget(smtp, smtp_server):
    smtp_server.stall_after_data(None)
    with pytest.raises(transport.InDoubt) as raised:
        send(smtp, ["ann@example.com"], budget=0.3)
    assert "timed out after 0.3 s" in str(raised.value)
    assert smtp_server.count == 1


def test_a_slow_reply_before_the_final_dot_is_a_timeout_not_in_doubt(smtp, smtp_server):
    smtp.ehlo()
    smtp_server.delay_replies(0.2)
    with pytest.raises(transport.ExchangeTimeout) as raised:
        send(smtp, ["a@example.com", "b@example.com", "c@example.com"], budget=0.3)
    assert raised.value.stage == transport.RCPT
    assert smtp_server.count == 0
    assert f"127.0.0.1:{smtp_server.port} not answering" in str(raised.value)


@pytest.mark.parametrize(
    "address",
    [
        "ann@example.com",
        "a+tag@sub-domain.example",
        "",
        "<>",
        "Ann <ann@example.com>",
        '"ann smith"@example.com',
        "jörg@bücher.example",
        "no-at-sign",
    ],
)
def test_addresses_are_quoted_as_smtplib_quotes_them(address):
    # The plain-address shortcut must never write a path smtplib would not.
    assert transport.quote_address(address) == smtplib.quoteaddr(address)


@pytest.mark.parametrize(
    "data",
    [
        b".first\r\n..second\r\nmid.dle\r\n.\r\n",
        b"no dots\r\n",
        b"",
        b"bare\n.lf\r.cr\n",
    ],
)
def test_dot_stuffing_gives_smtplibs_bytes(data):
    assert transport.dot_stuff(data) == smtplib._quote_periods(data)


def test_multiline_replies_are_read_whole_and_in_order():
    # RFC 5321 4.2.1: "250-" lines continue a reply. The reader must take
    # every line of one reply and leave the next reply for the next read.
    import socket

    ours, relay = socket.socketpair()
    client = smtplib.SMTP()
    client.sock = ours
    try:
        relay.sendall(b"250-queued as 1\r\n250-in\r\n250 stored\r\n451 later\r\n")
        deadline = time.monotonic() + 2
        assert transport.read_reply(client, deadline) == (
            250,
            b"queued as 1\nin\nstored",
        )
        assert transport.read_reply(client, deadline) == (451, b"later")
        relay.close()
        with pytest.raises(smtplib.SMTPServerDisconnected):
            transport.read_reply(client, deadline)
        assert client.sock is None  # closed, as smtplib's getreply does
    finally:
        relay.close()
        client.close()


# -- PIPELINING (RFC 2920) ------------------------------------------------------


class RecordingSocket:
    """The client's real socket, with every ``sendall`` kept: what was written
    in one go (the server cannot tell pipelined commands from others)."""

    def __init__(self, sock):
        self._sock = sock
        self.writes: list[bytes] = []

    def sendall(self, data, *args):
        self.writes.append(bytes(data))
        return self._sock.sendall(data, *args)

    def __getattr__(self, name):
        return getattr(self._sock, name)


def recording(client):
    client.ehlo()
    client.sock = RecordingSocket(client.sock)
    return client.sock


@pytest.mark.parametrize("pipelining", [True, False])
def test_pipelined_and_step_by_step_servers_get_the_same_message(
    smtp_server, pipelining
):
    smtp_server.advertise(pipelining=pipelining)
    client = smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=5)
    try:
        sock = recording(client)
        assert client.has_extn("pipelining") is pipelining
        done = send(client, ["ann@example.com", "bob@example.com"])
        send(client, ["cid@example.com"])  # the connection goes on
    finally:
        client.close()

    assert done.accepted == ["ann@example.com", "bob@example.com"]
    first, second = smtp_server.messages
    assert first.data == MESSAGE
    assert first.rcpt_tos == ["ann@example.com", "bob@example.com"]
    assert second.rcpt_tos == ["cid@example.com"]
    commands = [w for w in sock.writes if w.startswith((b"MAIL", b"RCPT", b"DATA"))]
    if pipelining:
        # MAIL, both RCPTs and DATA in one write; the content after the 354.
        assert commands[0] == (
            b"MAIL FROM:<a@example.com> SIZE=%d\r\n"
            b"RCPT TO:<ann@example.com>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n"
            % len(MESSAGE)
        )
        assert len(sock.writes) == 4  # 2 per message
    else:
        assert len(commands) == 4 + 3
        assert len(sock.writes) == 5 + 4


def test_a_refused_rcpt_in_a_pipeline_is_reported_per_recipient(smtp, smtp_server):
    smtp_server.reject(["gone@example.com"])
    smtp_server.defer(["full@example.com"], code=452, reply="4.2.2 Mailbox full")

    done = send(smtp, ["gone@example.com", "ann@example.com", "full@example.com"])

    assert done.accepted == ["ann@example.com"]
    assert done.refused == {
        "gone@example.com": (550, b"5.1.1 No such user"),
        "full@example.com": (452, b"4.2.2 Mailbox full"),
    }
    [received] = smtp_server.messages
    assert received.rcpt_tos == ["ann@example.com"]


def test_refusals_in_a_pipeline_leave_the_connection_ready(smtp, smtp_server):
    smtp_server.reject(["gone@example.com", "left@example.com"])
    with pytest.raises(smtplib.SMTPRecipientsRefused) as raised:
        send(smtp, ["gone@example.com", "left@example.com"])
    assert set(raised.value.recipients) == {"gone@example.com", "left@example.com"}
    smtp_server.refuse_senders(553, "5.7.1 Sender not allowed")
    with pytest.raises(smtplib.SMTPSenderRefused) as refused:
        send(smtp, ["ann@example.com"])
    assert refused.value.smtp_code == 553
    smtp_server.accept_all()

    send(smtp, ["ann@example.com"])  # same connection: nothing left unread

    [received] = smtp_server.messages
    assert received.rcpt_tos == ["ann@example.com"]
    assert smtp_server.connections == 1


@pytest.mark.parametrize("reply_delay", [0.0, 0.2], ids=["fast", "slow-relay"])
def test_a_refused_final_dot_resets_a_server_that_kept_the_transaction(
    smtp, smtp_server, reply_delay
):
    """A server that fails inside while storing the message answers 500 and
    keeps the transaction open (aiosmtpd after a handler error): without an
    RSET the next message on the connection gets "503 nested MAIL command"
    and an innocent reader fails for good. A relay 0.2 s away (every reply,
    the RSET's included) still gets its RSET within the message's budget."""
    smtp.ehlo()  # the test server delays each line of a multi-line reply
    smtp_server.delay_replies(reply_delay, greeting=False)
    smtp_server.crash_at_data(times=1)
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(smtp, ["ann@example.com"])
    assert refused.value.smtp_code == 500

    send(smtp, ["bob@example.com"])  # same connection, a clean transaction

    [received] = smtp_server.messages
    assert received.rcpt_tos == ["bob@example.com"]
    assert smtp_server.connections == 1


@pytest.mark.parametrize("command", ["mail", "rcpt", "data"])
def test_a_reset_mid_pipeline_is_before_the_final_dot(smtp, smtp_server, command):
    smtp_server.hang_up_at(command)

    with pytest.raises(smtplib.SMTPServerDisconnected) as raised:
        send(smtp, ["ann@example.com", "bob@example.com"])

    assert not isinstance(raised.value, transport.InDoubt)
    assert smtp_server.count == 0


def test_a_421_to_a_pipelined_rcpt_closes_the_connection(smtp, smtp_server):
    # RFC 5321 3.8: 421 is the server closing; the rest of the pipeline's
    # replies are not waited for, and nothing of the message is sent.
    smtp_server.defer(["b@example.com"], code=421, reply="4.3.2 Shutting down")

    with pytest.raises(smtplib.SMTPRecipientsRefused) as raised:
        send(smtp, ["a@example.com", "b@example.com", "c@example.com"])

    assert raised.value.recipients == {"b@example.com": (421, b"4.3.2 Shutting down")}
    assert smtp.sock is None
    assert smtp_server.count == 0
