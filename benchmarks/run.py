"""Benchmark django-mailer-jobs on SQLite and PostgreSQL; print a table.

    python benchmarks/run.py [--quick] [--json PATH] [--databases sqlite,postgres]

Each database gets a fresh store (a temporary SQLite file; a throwaway
PostgreSQL cluster from ``tests/postgres.py``, as the test suite starts it) and
a process of its own running ``benchmarks/suite.py``. Everything talks to
127.0.0.1; the SMTP sink is always a separate process. The full run takes
under 25 minutes on a 2-core machine, ``--quick`` (smaller sizes, one or two
repetitions) under 3.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.procs import PYTHON, Child, ChildFailed  # noqa: E402
from benchmarks.report import render_table  # noqa: E402

DATABASES = ("sqlite", "postgres")
#: Bounds for the whole run (expected: about 17 and 2.5 minutes); a suite that
#: would overrun is stopped, and what it measured so far is still reported.
RUN_BUDGET = {"full": 24 * 60, "quick": 170}


def machine() -> dict[str, Any]:
    import django

    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    memory = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "memory_gb": memory,
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "django": django.get_version(),
        "sqlite": sqlite3.sqlite_version,
        "load_average_at_start": os.getloadavg(),
    }


def cpu_ticks() -> list[int] | None:
    """The machine's CPU time so far by kind (/proc/stat), to tell afterwards
    how busy the machine was with other work."""
    try:
        with open("/proc/stat") as f:
            return [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None


def contention(before: list[int] | None) -> dict[str, Any]:
    after = cpu_ticks()
    out: dict[str, Any] = {"load_average_at_end": os.getloadavg()}
    if before and after and len(after) > 7:
        delta = [b - a for a, b in zip(before, after, strict=False)]
        total = sum(delta) or 1
        # Fields: user nice system idle iowait irq softirq steal ...
        out["busy_percent"] = round(100 * (total - delta[3] - delta[4]) / total, 1)
        out["steal_percent"] = round(100 * delta[7] / total, 1)
    return out


def run_suite(
    name: str, url: str, mode: str, workdir: str, timeout: float
) -> dict[str, Any]:
    out = os.path.join(workdir, f"{name}.json")
    args = [PYTHON, "-m", "benchmarks.suite", "--database", name, "--out", out]
    if mode == "quick":
        args.append("--quick")
    env = {**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
    env["DJANGO_SETTINGS_MODULE"] = "benchmarks.settings"
    # Its own process group: on a timeout or Ctrl-C, the suite and everything
    # it started (sinks, workers) go together.
    child = Child(args, env=env, stream_stderr=True, own_group=True)
    error = None
    try:
        finished = child.wait(timeout)
        if finished.returncode != 0:
            error = f"suite exited {finished.returncode}\n{finished.stdout}"
    except ChildFailed as failure:
        error = str(failure)
    finally:
        child.kill()
    # The suite saves after every part, so a failed run still has results.
    results: dict[str, Any] = {"database": name}
    if os.path.exists(out):
        with open(out) as f:
            results = json.load(f)
    if error:
        results["error"] = error
    return results


def run_database(name: str, mode: str, workdir: str, deadline: float) -> dict[str, Any]:
    if name == "sqlite":
        url = f"sqlite:///{workdir}/bench.sqlite3"
        return run_suite(name, url, mode, workdir, deadline - time.monotonic())
    from tests.postgres import PostgresError, PostgresNotFound, TemporaryPostgres

    try:
        pg = TemporaryPostgres()
        pg.start()
    except (PostgresNotFound, PostgresError) as error:
        return {"database": name, "error": f"PostgreSQL did not start: {error}"}
    try:
        print(f"PostgreSQL {pg.version} on {pg.host}:{pg.port}", file=sys.stderr)
        return run_suite(name, pg.url, mode, workdir, deadline - time.monotonic())
    finally:
        pg.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/run.py", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smaller sizes (10,000 instead of 100,000) and fewer repetitions",
    )
    parser.add_argument(
        "--json",
        default=str(ROOT / "benchmarks" / "results" / "latest.json"),
        help="where to write the results (default benchmarks/results/latest.json)",
    )
    parser.add_argument(
        "--databases",
        default=",".join(DATABASES),
        help="comma-separated, from: sqlite, postgres (default both)",
    )
    args = parser.parse_args(argv)
    databases = [d.strip() for d in args.databases.split(",") if d.strip()]
    unknown = [d for d in databases if d not in DATABASES]
    if unknown or not databases:
        parser.error(f"unknown database(s): {', '.join(unknown) or '(none)'}")
    mode = "quick" if args.quick else "full"

    started = time.monotonic()
    results: dict[str, Any] = {
        "mode": mode,
        "command": " ".join(["python", "benchmarks/run.py", *sys.argv[1:]]),
        "started_at": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
        "machine": machine(),
        "databases": {},
    }
    ticks = cpu_ticks()
    workdir = tempfile.mkdtemp(prefix="mailer-bench-run-")
    deadline = started + RUN_BUDGET[mode]
    try:
        for name in databases:
            results["databases"][name] = run_database(name, mode, workdir, deadline)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results["seconds"] = round(time.monotonic() - started, 1)
    results["machine"].update(contention(ticks))
    table, targets = render_table(results)
    results["targets"] = targets
    results["table"] = table
    print(table)
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(path)
    print(f"\nResults written to {path}", file=sys.stderr)
    failed = [name for name, r in results["databases"].items() if "error" in r]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
