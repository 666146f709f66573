"""The limit: already-built messages sent with a plain smtplib loop, no
database, no Django. Run as a process of its own::

    python -m benchmarks.blast --port P --messages FILE --count N [--offset K]
        [--connections C] [--seconds S]

It loads the messages (a pickled list of ``(envelope_from, [to], bytes)``,
built or sent by the engine itself), opens ``C`` connections (default 1),
prints ``ready`` and waits for a line on stdin, so that several of these start
sending at the same moment. Then it sends ``count`` messages, cycling through
the list from ``offset``: over one connection in this thread, or over ``C``
connections in ``C`` threads, each with its own ``smtplib.SMTP`` and its share
of the count (the way a sender with C connections in one process would).
With ``--seconds S`` each connection stops after S seconds even if its share
is not sent yet (``count`` is then a cap), for a fixed-length measurement
whatever the server's speed. It prints a JSON line with what it did
(``sent``; ``cpu``: this process's CPU seconds while sending).
"""

from __future__ import annotations

import argparse
import json
import pickle
import smtplib
import sys
import threading
import time


def _send(
    smtp: smtplib.SMTP,
    messages: list[tuple[str, list[str], bytes]],
    start: int,
    count: int,
    deadline: float,
) -> int:
    """Send up to ``count`` messages from ``start`` until ``deadline``
    (``time.perf_counter()``); return how many were sent."""
    total = len(messages)
    for sent, i in enumerate(range(start, start + count)):
        if time.perf_counter() >= deadline:
            return sent
        envelope_from, recipients, data = messages[i % total]
        smtp.sendmail(envelope_from, recipients, data)
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.blast")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--messages", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--seconds", type=float, help="stop sending after this long")
    args = parser.parse_args(argv)
    if args.connections < 1 or args.count < 1:
        parser.error("--connections and --count must be positive")
    with open(args.messages, "rb") as f:
        messages = pickle.load(f)
    connections = []
    for _ in range(args.connections):
        smtp = smtplib.SMTP("127.0.0.1", args.port, timeout=60)
        smtp.ehlo()
        connections.append(smtp)
    share, extra = divmod(args.count, args.connections)
    counts = [share + (1 if i < extra else 0) for i in range(args.connections)]
    print("ready", flush=True)
    sys.stdin.readline()
    started, cpu_started = time.perf_counter(), time.process_time()
    deadline = started + args.seconds if args.seconds else float("inf")
    sent = [0] * args.connections
    if args.connections == 1:
        sent[0] = _send(connections[0], messages, args.offset, args.count, deadline)
    else:
        errors: list[BaseException] = []

        def run(i: int) -> None:
            try:
                start = args.offset + sum(counts[:i])
                sent[i] = _send(connections[i], messages, start, counts[i], deadline)
            except BaseException as error:  # noqa: BLE001 - reported below
                errors.append(error)

        threads = [
            threading.Thread(target=run, args=(i,), daemon=True)
            for i in range(args.connections)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    for smtp in connections:
        smtp.quit()
    print(
        json.dumps(
            {
                "sent": sum(sent),
                "connections": args.connections,
                "seconds": seconds,
                "cpu": cpu,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
