"""Where the time goes: cProfile one benchmarked operation, print the top.

    python benchmarks/profiling.py send|cpu|expand|admin [--postgres] [--count N]
        [--repeat R] [--ab SETTING]

``send``: ``send_queued()`` in-process for N queued job messages (default
3,000) to the fast SMTP sink (``fastsink.py``); ``cpu``: the same without the
profiler, repeated ``--repeat`` times, printing the worker's CPU per message
(``time.process_time()`` around ``send_queued()``) beside the server's (its
CPU between its first and last message), with ``--ab SETTING`` alternating
a boolean setting off and on from run to run (``--ab MAILER_WRITE_BEHIND``:
interleaved runs, so that a shared machine's drift hits both alike);
``expand``: ``expand_pending_jobs()``
for a job of N recipients (default 100,000); ``admin``: the "Yes, I'm sure"
POST of the admin action with N subscribers (default 100,000). SQLite on a
temporary file, or a throwaway PostgreSQL with ``--postgres``.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_COUNT = {"send": 3_000, "cpu": 2_000, "expand": 100_000, "admin": 100_000}


def cpu_per_message(count: int, repeat: int, ab: str | None = None) -> None:
    """Print the worker's and the server's CPU per message (milliseconds)
    for ``repeat`` runs of ``send_queued()`` over ``count`` job messages;
    with ``ab``, that boolean setting is False in odd runs, True in even."""
    import datetime
    import resource

    from django.core.management import call_command

    from benchmarks.benchapp.admin import ISSUE_EMAIL
    from benchmarks.benchapp.models import Issue
    from benchmarks.procs import FastSink
    from benchmarks.suite import Sizes, Suite
    from mailer.sending.engine import send_queued

    call_command("migrate", verbosity=0)
    out = os.path.join(tempfile.gettempdir(), f"mailer-profile-{os.getpid()}.json")
    suite = Suite("profile", Sizes.quick(), out)
    suite.issue = Issue.objects.create(
        headline="Harbour bridge reopens after two years",
        date=datetime.date(2026, 11, 28),
    )
    suite.content = ISSUE_EMAIL.render(suite.issue)
    from django.db import connection

    print(
        f"{connection.vendor}, {count} job messages a run; "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    from django.test import override_settings

    per_message = []
    rates: dict[str, list[float]] = {}
    for run in range(repeat):
        label = f"{ab}={run % 2 == 1}" if ab else "all"
        overrides = {ab: run % 2 == 1} if ab else {}
        suite.queue_job(count)
        with FastSink(max_seconds=suite.send_timeout(count) + 60) as sink:
            with suite.smtp_port(sink.port), override_settings(**overrides):
                usage = resource.getrusage(resource.RUSAGE_SELF)
                cpu = time.process_time()
                result = send_queued(max_seconds=suite.send_timeout(count))
                cpu = time.process_time() - cpu
                after = resource.getrusage(resource.RUSAGE_SELF)
            stats = sink.stop()
        if result.sent != count:
            raise SystemExit(f"sent {result.sent} of {count}: {result.summary()}")
        # Every outcome is in the database, not only counted in the run.
        from mailer.models import Message, MessageLog, MessageStatus

        rows = Message.all_objects.filter(status=MessageStatus.SENT).count()
        if (rows, MessageLog.objects.count(), stats.count) != (count,) * 3:
            raise SystemExit(f"{rows} rows sent, {stats.count} received of {count}")
        server = (stats.cpu_between or 0.0) / max(1, stats.count - 1)
        user = after.ru_utime - usage.ru_utime
        system = after.ru_stime - usage.ru_stime
        per_message.append(cpu / count * 1000)
        rates.setdefault(label, []).append(result.rate)
        print(
            f"run {run + 1}{' ' + label if ab else ''}: "
            f"worker {cpu / count * 1000:.3f} ms CPU/message "
            f"(user {user / count * 1000:.3f}, system {system / count * 1000:.3f}); "
            f"server {server * 1000:.3f} ms; {result.rate:.0f} messages/s wall"
        )
    # On a shared machine other processes slow the worker's own CPU time
    # too (caches, frequency): the least of several runs is the steadiest.
    per_message.sort()
    print(
        f"worker CPU/message over {repeat} runs: least {per_message[0]:.3f} ms, "
        f"median {per_message[len(per_message) // 2]:.3f} ms"
    )
    for label, values in rates.items() if ab else ():
        values.sort()
        print(
            f"{label}: {len(values)} runs, {values[0]:.0f}-{values[-1]:.0f} "
            f"messages/s wall, median {values[len(values) // 2]:.0f}"
        )
    suite.reset_queue()


def profile(what: str, count: int) -> cProfile.Profile:
    import datetime

    from django.core.management import call_command

    from benchmarks.benchapp.admin import ISSUE_EMAIL
    from benchmarks.benchapp.models import Issue
    from benchmarks.procs import FastSink
    from benchmarks.suite import Sizes, Suite

    call_command("migrate", verbosity=0)
    out = os.path.join(tempfile.gettempdir(), f"mailer-profile-{os.getpid()}.json")
    suite = Suite("profile", Sizes.quick(), out)
    suite.issue = Issue.objects.create(
        headline="Harbour bridge reopens after two years",
        date=datetime.date(2026, 11, 28),
    )
    suite.content = ISSUE_EMAIL.render(suite.issue)
    # CPU time, not wall time: waiting for the server or the disk is not
    # what the worker spends.
    profiler = cProfile.Profile(time.process_time)
    if what == "send":
        from mailer.sending.engine import send_queued

        suite.queue_job(count)
        with FastSink(max_seconds=suite.send_timeout(count) + 60) as sink:
            with suite.smtp_port(sink.port):
                profiler.enable()
                result = send_queued(max_seconds=suite.send_timeout(count))
                profiler.disable()
            sink.stop()
        print(result.summary())
    elif what == "expand":
        from mailer.jobs.expand import expand_pending_jobs

        suite.reset_queue()
        suite.create_job(count)
        profiler.enable()
        result = expand_pending_jobs()
        profiler.disable()
        print(result.summary())
    else:
        from django.contrib.auth.models import User
        from django.test import Client
        from django.urls import reverse

        from benchmarks.benchapp.models import Subscriber
        from benchmarks.workload import subscribers

        Subscriber.objects.bulk_create(
            (Subscriber(**s) for s in subscribers(count)), batch_size=5000
        )
        client = Client()
        client.force_login(
            User.objects.create_superuser("editor", "editor@example.com", "pw")
        )
        url = reverse("admin:benchapp_issue_changelist")
        data = {"action": "send_email_update", "_selected_action": [suite.issue.pk]}
        client.post(url, data)  # warm up
        profiler.enable()
        response = client.post(url, {**data, "post": "yes"})
        profiler.disable()
        print(f"'Yes, I'm sure' answered {response.status_code}")
    suite.reset_queue()
    return profiler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/profiling.py")
    parser.add_argument("what", choices=sorted(DEFAULT_COUNT))
    parser.add_argument("--count", type=int)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--top", type=int, default=35)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ab", help="cpu: a boolean setting, off and on by turns")
    args = parser.parse_args(argv)
    count = args.count or DEFAULT_COUNT[args.what]
    if "DJANGO_SETTINGS_MODULE" not in os.environ:
        # Start again in a child with the database chosen: settings cannot
        # change databases once Django is set up.
        command = [sys.executable, __file__, args.what, "--count", str(count)]
        command += ["--top", str(args.top), "--repeat", str(args.repeat)]
        if args.ab:
            command += ["--ab", args.ab]
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "benchmarks.settings",
            "PYTHONPATH": str(ROOT),
        }
        if args.postgres:
            from tests.postgres import TemporaryPostgres

            with TemporaryPostgres() as pg:
                env["DATABASE_URL"] = pg.url
                return subprocess.run(command, env=env, timeout=1800).returncode
        with tempfile.TemporaryDirectory(prefix="mailer-profile-") as tmp:
            env["DATABASE_URL"] = f"sqlite:///{tmp}/profile.sqlite3"
            return subprocess.run(command, env=env, timeout=1800).returncode
    import django

    django.setup()
    if args.what == "cpu":
        cpu_per_message(count, args.repeat, args.ab)
        return 0
    stats = pstats.Stats(profile(args.what, count))
    if os.environ.get("MAILER_PROFILE_DUMP"):
        # For pstats by hand: callers, callees.
        stats.dump_stats(os.environ["MAILER_PROFILE_DUMP"])
    stats.sort_stats("cumulative").print_stats(args.top)
    stats.sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
