"""An SMTP sink that says when marked messages arrive, for the overtaking
benchmark. It runs :class:`mailer.testing.smtp.SMTPTestServer` in a process
of its own and prints a JSON line, with ``time.time()``, for the first
message and for every message to a recipient starting with ``--mark``::

    python -m benchmarks.marksink --mark probe- --max-seconds 300
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time

from mailer.testing.smtp import ReceivedEmail, SMTPTestServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.marksink")
    parser.add_argument("--mark", required=True)
    parser.add_argument("--max-seconds", type=float, default=600)
    args = parser.parse_args(argv)
    finished = threading.Event()
    lock = threading.Lock()
    first = True

    def report(**event) -> None:
        with lock:
            print(json.dumps(event), flush=True)

    def on_message(received: ReceivedEmail) -> None:
        nonlocal first
        now = time.time()
        if first:
            first = False
            report(event="first", at=now)
        for rcpt in received.rcpt_tos:
            if rcpt.startswith(args.mark):
                report(event="marked", rcpt=rcpt, at=now)

    signal.signal(signal.SIGTERM, lambda signum, frame: finished.set())
    server = SMTPTestServer(keep_data=False, on_message=on_message)
    server.start()
    try:
        report(event="ready", port=server.port)
        finished.wait(args.max_seconds)
    finally:
        server.stop()
    report(event="stopped", count=server.count)
    return 0


if __name__ == "__main__":
    sys.exit(main())
