"""How long a password reset waits: from the commit of ``mailer.send_mail()``
to the SMTP server receiving it, per way of running the workers.

    python benchmarks/wakeup.py [--samples 20] [--databases sqlite,postgres]
                                [--json FILE]

For each database (SQLite file; a throwaway PostgreSQL from tests/postgres.py)
a child process sets Django up, starts an SMTP sink on 127.0.0.1 in its own
thread, and for each way of running the workers queues one high-priority
email at a time, ``--samples`` times, timing from the moment
``mailer.send_mail()`` returns (committed: autocommit) to the moment the sink
accepts the message (``time.monotonic()`` in one process). Between samples
it waits a random pause, so each sample meets the worker at another point of
its cycle.

- ``cron``: ``manage.py send_mail`` once a minute. Not waited for in real
  time: each sample is a uniformly random wait for the next minute (0-60 s)
  plus a measured ``send_mail`` process started right after the commit.
- ``send_mail --loop``: woken like ``runmailer`` (for due mail), at the
  latest after ``MAILER_LOOP_IDLE_SECONDS`` (5 s).
- ``runmailer``: LISTEN/NOTIFY on PostgreSQL; on SQLite the poll,
  ``MAILER_POLL_SECONDS`` (0.5 s).
- ``tasks (db_worker)``: ``MAILER_USE_TASKS`` enqueues a task on commit and
  django-tasks-db's ``db_worker --interval 0.2`` runs it.

Prints a table (median and worst, seconds); ``--json FILE`` writes every
sample. Numbers from a busy machine are noisy: compare medians.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MODES = ["cron", "send_mail --loop", "runmailer", "tasks (db_worker)"]
#: Bound for one email to arrive (seconds).
ARRIVAL_TIMEOUT = 120.0
CRON_PERIOD = 60.0


# -- the child: one database ---------------------------------------------------


def _worker(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "django", *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)


def _one_email(server, n: int) -> float:
    """Queue one email; return the seconds until the sink has it."""
    import mailer

    mailer.send_mail(
        "Reset your password",
        "Body",
        "site@example.com",
        [f"reader{n}@example.com"],
        priority="high",
    )
    committed = time.monotonic()
    if not server.wait_for(n, timeout=ARRIVAL_TIMEOUT):
        raise RuntimeError(f"email {n} did not arrive within {ARRIVAL_TIMEOUT:g}s")
    return server.last_at - committed


def measure_database(samples: int, seed: int) -> dict[str, list[float]]:
    os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.wakeup_settings"
    from mailer.testing.smtp import SMTPTestServer

    server = SMTPTestServer(keep_data=False)
    server.start()
    os.environ["MAILER_BENCH_SMTP_PORT"] = str(server.port)
    import django

    django.setup()
    from django.core.management import call_command
    from django.test.utils import override_settings

    call_command("migrate", verbosity=0)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "benchmarks.wakeup_settings",
    }
    rng = random.Random(seed)
    results: dict[str, list[float]] = {}
    sent = 0

    def email() -> float:
        nonlocal sent
        sent += 1
        return _one_email(server, sent)

    # cron: a random wait for the next tick, then a real send_mail process.
    cron = []
    for _ in range(samples):
        phase = rng.uniform(0, CRON_PERIOD)
        import mailer

        sent += 1
        mailer.send_mail(
            "Reset your password",
            "Body",
            "site@example.com",
            [f"reader{sent}@example.com"],
            priority="high",
        )
        committed = time.monotonic()
        process = _worker(["send_mail"], env)
        process.wait(timeout=ARRIVAL_TIMEOUT)
        if not server.wait_for(sent, timeout=ARRIVAL_TIMEOUT):
            raise RuntimeError("cron-style send_mail delivered nothing")
        cron.append(phase + server.last_at - committed)
    results["cron"] = cron

    workers = {
        "send_mail --loop": (["send_mail", "--loop"], 5.0, False),
        "runmailer": (["runmailer", "--idle-seconds", "600"], 1.0, False),
        "tasks (db_worker)": (
            ["db_worker", "--interval", "0.2", "--no-startup-delay", "--no-reload"],
            1.0,
            True,
        ),
    }
    for mode, (args, cycle, use_tasks) in workers.items():
        with override_settings(MAILER_USE_TASKS=use_tasks):
            process = _worker(args, env)
            try:
                email()  # warm-up: the worker is up and idle after this
                latencies = []
                for _ in range(samples):
                    time.sleep(rng.uniform(0.05, cycle))
                    latencies.append(email())
            finally:
                _stop(process)
        results[mode] = latencies
    server.stop()
    return results


# -- the parent: databases, table, JSON ----------------------------------------


def _child(samples: int, seed: int, url: str) -> dict[str, list[float]]:
    done = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            "--samples",
            str(samples),
            "--seed",
            str(seed),
        ],
        env={**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if done.returncode != 0:
        raise SystemExit(f"measuring {url} failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.samples < 1:
        parser.error("--samples must be at least 1")
    if options.child:
        print(json.dumps(measure_database(options.samples, options.seed)))
        return

    by_database: dict[str, dict[str, list[float]]] = {}
    for database in options.databases.split(","):
        if database == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                url = f"sqlite:///{tmp}/wakeup.sqlite3"
                by_database[database] = _child(options.samples, options.seed, url)
        elif database == "postgres":
            from tests.postgres import TemporaryPostgres

            with TemporaryPostgres() as pg:
                by_database[database] = _child(options.samples, options.seed, pg.url)
        else:
            parser.error(f"unknown database {database!r}")

    print(f"Commit to SMTP server, seconds ({options.samples} samples each)")
    print(f"{'database':<10} {'mode':<20} {'median':>8} {'worst':>8}")
    report = {"samples": options.samples, "results": {}}
    for database, modes in by_database.items():
        for mode in MODES:
            values = modes[mode]
            median, worst = statistics.median(values), max(values)
            print(f"{database:<10} {mode:<20} {median:>8.3f} {worst:>8.3f}")
            report["results"].setdefault(database, {})[mode] = {
                "median": median,
                "worst": worst,
                "samples": values,
            }
    if options.json:
        Path(options.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
