"""Messages per second of one ``send_mail`` run over 1, 2, 4, 8, 16 connections
against a relay that answers DATA after a delay (printed, for choosing
``MAILER_CONNECTIONS``)::

    python benchmarks/connections.py [--delay 0.025] [--connections 1,2,4,8,16]

SQLite (a fresh file in a temporary directory) unless ``DATABASE_URL`` names
another database. The SMTP test server runs in its own process, so its CPU
does not compete with the sender's threads. Each round queues a personalised
newsletter (job mail, the engine's bulk path) of ``--per-connection`` x N
messages (at least ``--min-messages``), sends it in-process with
``send_queued(connections=N)``, and takes the rate from the run's own clock.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SERVER = """
import sys, time
from mailer.testing.smtp import SMTPTestServer
server = SMTPTestServer(keep_data=False)
server.start()
server.delay(float(sys.argv[1]))
print(server.port, flush=True)
deadline = time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline and sys.stdin.readline():
    pass
server.stop()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--delay", type=float, default=0.025, help="seconds")
    parser.add_argument("--connections", default="1,2,4,8,16")
    parser.add_argument("--per-connection", type=int, default=100)
    parser.add_argument("--min-messages", type=int, default=300)
    parser.add_argument("--max-messages", type=int, default=2000)
    args = parser.parse_args()

    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(args.delay), "900"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        port = server.stdout.readline().strip()
        tmp = tempfile.mkdtemp(prefix="mailer-connections-")
        os.environ.setdefault("DATABASE_URL", f"sqlite:///{tmp}/bench.sqlite3")
        os.environ["MAILER_BENCH_SMTP_PORT"] = port
        os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.settings"
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connection

        from mailer.models import Message
        from mailer.sending.engine import send_queued
        from tests.faultlib import addresses, fill_job

        call_command("migrate", verbosity=0)
        print(
            f"relay delay {args.delay * 1000:g} ms before each DATA reply, "
            f"{connection.vendor}"
        )
        for n in [int(x) for x in args.connections.split(",")]:
            count = min(max(args.per_connection * n, args.min_messages), 2000)
            count = min(count, args.max_messages)
            Message.all_objects.all().delete()
            fill_job(addresses(count, f"c{n}-"))
            started = time.monotonic()
            result = send_queued(connections=n)
            seconds = time.monotonic() - started
            assert result.sent == count, result
            print(
                f"connections {n:>2}: {count:>5} messages in {seconds:6.2f} s "
                f"= {count / seconds:7.1f} messages/s, "
                f"CPU {result.cpu_seconds / count * 1000:.2f} ms/message",
                flush=True,
            )
    finally:
        server.stdin.close()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
