"""A fast SMTP sink for the benchmarks: counts messages, keeps no bodies.

    python -m benchmarks.fastsink --ready-file F --stats-file S [--delay-ms D]
        [--capture FILE --capture-count K] [--max-seconds T]

Why not aiosmtpd (``mailer.testing.smtp.SMTPTestServer``): it reads ``DATA``
line by line and spends about 2 ms of CPU on a 15 KB message, more than the
sender, so a ratio "engine / plain loop" against it measures the sink. This
one speaks just enough SMTP (RFC 5321: EHLO/HELO, MAIL, RCPT, DATA, RSET,
NOOP, QUIT) on an ``asyncio.Protocol`` and reads the whole ``DATA`` with one
``readuntil(b"\\r\\n.\\r\\n")``, a C-level search, so its CPU per message is a
small fraction of a millisecond.

It offers PIPELINING (RFC 2920), as Postfix does: the replies to the
commands that arrived together leave together, in order, in one write.

``--delay-ms D`` waits D milliseconds (a timer, so many connections wait at
once) before every reply, the greeting included, and before every group of
pipelined replies (one round trip): a relay that is far away or slow.
``--capture FILE`` keeps the first K messages as a pickled list
of ``(envelope_from, [recipients], bytes)`` (dot-unstuffed), written when the
sink stops: the limit loop then sends exactly the bytes the engine sent.

Stats (JSON, rewritten once a second and at SIGTERM): ``count``,
``connections``, ``first_at`` / ``last_at`` (``time.monotonic()`` of the first
and last accepted message), ``cpu`` (``time.process_time()``: this process's
own CPU seconds so far) and ``cpu_first`` / ``cpu_last`` (the same at the
first and last message, so CPU per message excludes start-up and idling).
Listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pickle
import signal
import sys
import time

#: Longest message accepted (bytes); also the stream's buffer limit.
MAX_MESSAGE = 64 * 1024 * 1024
END_OF_DATA = b"\r\n.\r\n"


class Stats:
    def __init__(self) -> None:
        self.count = 0
        self.connections = 0
        self.first_at: float | None = None
        self.last_at: float | None = None
        self.cpu_first: float | None = None
        self.cpu_last: float | None = None

    def accepted(self) -> None:
        now = time.monotonic()
        cpu = time.process_time()
        if self.first_at is None:
            self.first_at, self.cpu_first = now, cpu
        self.last_at, self.cpu_last = now, cpu
        self.count += 1

    def as_dict(self) -> dict[str, object]:
        return {
            "count": self.count,
            "connections": self.connections,
            "first_at": self.first_at,
            "last_at": self.last_at,
            "cpu": time.process_time(),
            "cpu_first": self.cpu_first,
            "cpu_last": self.cpu_last,
        }


class Session(asyncio.Protocol):
    """One SMTP connection. A ``Protocol`` rather than a stream reader and
    coroutine: each received chunk is parsed in place, with no future or task
    per line, which is what keeps the CPU per message low."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.buffer = b""
        self.in_data = False
        self.mail_from: str | None = None
        self.rcpts: list[str] = []
        self.transport: asyncio.Transport | None = None
        self.closing = False
        #: Replies to the commands of the chunk being parsed (None: none
        #: being parsed; reply() writes at once).
        self.pending: list[bytes] | None = None
        self.close_after = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.sink.stats.connections += 1
        self.reply(b"220 fastsink ESMTP\r\n")

    def reply(self, line: bytes, close: bool = False) -> None:
        if self.pending is not None:
            self.pending.append(line)
            self.close_after = self.close_after or close
            return
        self._send(line, close)

    def _send(self, line: bytes, close: bool) -> None:
        if self.sink.delay:
            # Replies to one connection leave in order (same delay, FIFO);
            # many connections wait at once.
            self.sink.loop.call_later(self.sink.delay, self._write, line, close)
        else:
            self._write(line, close)

    def _write(self, line: bytes, close: bool) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(line)
        if close:
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.pending, self.close_after = [], False
        try:
            self._parse(data)
        finally:
            pending, self.pending = self.pending, None
            if pending:
                self._send(b"".join(pending), self.close_after)

    def _parse(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        while buffer and not self.closing:
            if self.in_data:
                # The end of DATA may be the very first line (empty body).
                if buffer.startswith(b".\r\n"):
                    end, body = 3, b""
                else:
                    found = buffer.find(END_OF_DATA)
                    if found < 0:
                        if len(buffer) > MAX_MESSAGE:
                            self.reply(b"552 5.3.4 Message too big\r\n", close=True)
                            self.closing = True
                        break
                    end, body = found + len(END_OF_DATA), buffer[: found + 2]
                buffer = buffer[end:]
                self.in_data = False
                self.sink.accepted(self.mail_from or "", self.rcpts, body)
                self.mail_from, self.rcpts = None, []
                self.reply(b"250 2.0.0 OK queued\r\n")
                continue
            newline = buffer.find(b"\n")
            if newline < 0:
                if len(buffer) > 4096:
                    self.reply(b"500 5.5.2 Line too long\r\n", close=True)
                    self.closing = True
                break
            line, buffer = buffer[: newline + 1], buffer[newline + 1 :]
            self.command(line)
        self.buffer = buffer

    def command(self, line: bytes) -> None:
        verb = line[:4].upper()
        if verb == b"EHLO":
            self.reply(
                b"250-fastsink\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
                b"250-SMTPUTF8\r\n250 SIZE 104857600\r\n"
            )
        elif verb == b"HELO":
            self.reply(b"250 fastsink\r\n")
        elif verb == b"MAIL":
            self.mail_from, self.rcpts = _path(line), []
            self.reply(b"250 2.1.0 OK\r\n")
        elif verb == b"RCPT":
            if self.mail_from is None:
                self.reply(b"503 5.5.1 MAIL first\r\n")
            else:
                self.rcpts.append(_path(line))
                self.reply(b"250 2.1.5 OK\r\n")
        elif verb == b"DATA":
            if not self.rcpts:
                self.reply(b"503 5.5.1 RCPT first\r\n")
            else:
                self.in_data = True
                self.reply(b"354 End data with <CR><LF>.<CR><LF>\r\n")
        elif verb == b"RSET":
            self.mail_from, self.rcpts = None, []
            self.reply(b"250 2.0.0 OK\r\n")
        elif verb == b"NOOP":
            self.reply(b"250 2.0.0 OK\r\n")
        elif verb == b"QUIT":
            self.closing = True
            self.reply(b"221 2.0.0 Bye\r\n", close=True)
        else:
            self.reply(b"502 5.5.2 Command not implemented\r\n")


class Sink:
    def __init__(
        self, loop: asyncio.AbstractEventLoop, delay: float, capture_count: int
    ) -> None:
        self.loop = loop
        self.delay = delay
        self.stats = Stats()
        self.capture_count = capture_count
        self.captured: list[tuple[str, list[str], bytes]] = []

    def accepted(self, mail_from: str, rcpts: list[str], body: bytes) -> None:
        self.stats.accepted()
        if len(self.captured) < self.capture_count:
            self.captured.append((mail_from, rcpts, _unstuff(body)))


def _path(line: bytes) -> str:
    """The address between < and > of a MAIL or RCPT command."""
    text = line.decode("utf-8", "replace")
    start, end = text.find("<"), text.find(">")
    return text[start + 1 : end] if 0 <= start < end else ""


def _unstuff(body: bytes) -> bytes:
    """The message as the client meant it: the leading dot of stuffed lines
    removed (RFC 5321 section 4.5.2), the final CRLF kept."""
    data = body
    if data.startswith(b".."):
        data = data[1:]
    return data.replace(b"\r\n..", b"\r\n.")


def _write_json(path: str, data: object) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    sink = Sink(loop, args.delay_ms / 1000, args.capture_count if args.capture else 0)
    server = await loop.create_server(lambda: Session(sink), "127.0.0.1", args.port)
    port = server.sockets[0].getsockname()[1]
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    if args.ready_file:
        _write_json(args.ready_file, port)
    else:
        print(port, flush=True)
    deadline = loop.time() + args.max_seconds
    while not stop.is_set() and loop.time() < deadline:
        if args.stats_file:
            _write_json(args.stats_file, sink.stats.as_dict())
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except asyncio.TimeoutError:
            pass
    server.close()
    if args.capture:
        with open(args.capture, "wb") as f:
            pickle.dump(sink.captured, f)
    if args.stats_file:
        _write_json(args.stats_file, sink.stats.as_dict())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fastsink")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--delay-ms", type=float, default=0.0, help="wait before every reply"
    )
    parser.add_argument("--ready-file", help="where to write the port once listening")
    parser.add_argument("--stats-file")
    parser.add_argument("--capture", help="pickle the first messages here at exit")
    parser.add_argument("--capture-count", type=int, default=200)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    args = parser.parse_args(argv)
    if args.delay_ms < 0 or args.max_seconds <= 0:
        parser.error("--delay-ms must be >= 0 and --max-seconds positive")
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
