"""The limit: already-built messages sent with a plain smtplib loop over one
connection, no database, no Django. Run as a process of its own::

    python -m benchmarks.blast --port P --messages FILE --count N [--offset K]

It loads the messages (a pickled list of ``(envelope_from, [to], bytes)``,
built by the engine itself), connects, prints ``ready`` and waits for a line
on stdin, so that several of these start sending at the same moment. Then it
sends ``count`` messages, cycling through the list from ``offset``, and prints
a JSON line with what it did.
"""

from __future__ import annotations

import argparse
import json
import pickle
import smtplib
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.blast")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--messages", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--offset", type=int, default=0)
    args = parser.parse_args(argv)
    with open(args.messages, "rb") as f:
        messages = pickle.load(f)
    smtp = smtplib.SMTP("127.0.0.1", args.port, timeout=30)
    smtp.ehlo()
    print("ready", flush=True)
    sys.stdin.readline()
    started, cpu_started = time.perf_counter(), time.process_time()
    total = len(messages)
    for i in range(args.offset, args.offset + args.count):
        envelope_from, recipients, data = messages[i % total]
        smtp.sendmail(envelope_from, recipients, data)
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    smtp.quit()
    print(json.dumps({"sent": args.count, "seconds": seconds, "cpu": cpu}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
