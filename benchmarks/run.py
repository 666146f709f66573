"""Benchmark django-mailer-jobs on SQLite and PostgreSQL; print a table.

    python benchmarks/run.py [--quick] [--json PATH] [--databases sqlite,postgres]
        [--figures suite,relay,report] [--tuned] [--delays 0,5,25]
        [--connections 8] [--relay-seconds S] [--relay-messages M]

Each database gets a fresh store (a temporary SQLite file; a throwaway
PostgreSQL cluster from ``tests/postgres.py`` with PostgreSQL's stock, durable
settings) and, per figure, a process of its own: ``benchmarks/suite.py``
(the modules of ``benchmarks/figures/``: idle, admin, expansion, limit,
sending, SQL, memory, overtaking), ``benchmarks/relay.py``
(a relay D ms away) and ``benchmarks/desk_report.py`` (the job report page
of a 100,000-reader job). ``--tuned`` adds the same runs on non-durable
settings as extra, labelled columns. Everything talks to 127.0.0.1; the SMTP
server is always a separate process. The full run takes about 25 minutes for
the suite, 15 for the relay figure and 2 for the report on a 2-core machine;
``--quick`` a few minutes.
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

from benchmarks.desk_report import table as report_table  # noqa: E402
from benchmarks.procs import PYTHON, Child, ChildFailed  # noqa: E402
from benchmarks.relay import RelaySizes  # noqa: E402
from benchmarks.relay import table as relay_table  # noqa: E402
from benchmarks.report import header_lines, render_table  # noqa: E402

DATABASES = ("sqlite", "postgres")
FIGURES = ("suite", "relay", "report")
#: Bounds for the suite (expected: about 20 and 3 minutes on durable settings,
#: which commit slower than the old fsync=off runs); a suite that
#: would overrun is stopped, and what it measured so far is still reported.
RUN_BUDGET = {"full": 35 * 60, "quick": 240}
#: Bound for the report figure on one database (expected: about a minute at
#: 100,000 readers, most of it building the job).
REPORT_BUDGET = {"full": 10 * 60, "quick": 180}


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
    name: str,
    url: str,
    mode: str,
    workdir: str,
    timeout: float,
    module: str = "benchmarks.suite",
    extra: list[str] | None = None,
) -> dict[str, Any]:
    """One figure's module on one database, in a process of its own."""
    out = os.path.join(workdir, f"{name}-{module.rsplit('.', 1)[-1]}.json")
    args = [PYTHON, "-m", module, "--database", name, "--out", out, *(extra or [])]
    if mode == "quick":
        args.append("--quick")
    env = {**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
    env["DJANGO_SETTINGS_MODULE"] = "benchmarks.settings"
    env.pop("MAILER_BENCH_TUNED", None)
    if name.endswith("-tuned"):
        env["MAILER_BENCH_TUNED"] = "1"
    # Its own process group: on a timeout or Ctrl-C, the suite and everything
    # it started (sinks, workers) go together.
    child = Child(args, env=env, stream_stderr=True, own_group=True)
    error = None
    try:
        finished = child.wait(timeout)
        if finished.returncode != 0:
            error = f"{module} exited {finished.returncode}\n{finished.stdout}"
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


def run_figures(
    name: str, url: str, mode: str, workdir: str, plan: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    if "suite" in plan:
        # The suite's budget is shared by its databases (a slow SQLite run
        # leaves less to PostgreSQL), and counts the suite's own time only.
        started = time.monotonic()
        out["suite"] = run_suite(name, url, mode, workdir, plan["suite"]["left"])
        plan["suite"]["left"] -= time.monotonic() - started
    if "relay" in plan:
        out["relay"] = run_suite(
            name,
            url,
            mode,
            workdir,
            plan["relay"]["budget"],
            module="benchmarks.relay",
            extra=plan["relay"]["args"],
        )
    if "report" in plan:
        out["report"] = run_suite(
            name,
            url,
            mode,
            workdir,
            plan["report"]["budget"],
            module="benchmarks.desk_report",
        )
    return out


def run_database(
    name: str, mode: str, workdir: str, plan: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """Every planned figure on one fresh database: ``{figure: results}``."""
    if name.startswith("sqlite"):
        url = f"sqlite:///{workdir}/{name}.sqlite3"
        return run_figures(name, url, mode, workdir, plan)
    from tests.postgres import PostgresError, PostgresNotFound, TemporaryPostgres

    try:
        # Stock settings (fsync, synchronous_commit, full_page_writes on)
        # unless this is the labelled tuned column.
        pg = TemporaryPostgres(durable=not name.endswith("-tuned"))
        pg.start()
    except (PostgresNotFound, PostgresError) as error:
        failed = {"database": name, "error": f"PostgreSQL did not start: {error}"}
        return {figure: dict(failed) for figure in plan}
    try:
        print(f"PostgreSQL {pg.version} on {pg.host}:{pg.port}", file=sys.stderr)
        return run_figures(name, pg.url, mode, workdir, plan)
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
    parser.add_argument(
        "--figures",
        default=",".join(FIGURES),
        help="comma-separated, from: suite, relay, report (default all)",
    )
    parser.add_argument(
        "--tuned",
        action="store_true",
        help="also run each database on non-durable settings (labelled columns)",
    )
    parser.add_argument(
        "--delays", help="relay: server delays in ms (default 0,5,25; quick 0,25)"
    )
    parser.add_argument(
        "--connections", type=int, help="relay: N connections (default 8)"
    )
    parser.add_argument(
        "--relay-seconds",
        type=float,
        help="relay: length of each limit case, and the drain M is scaled to "
        "(default 20 s; quick 5 s)",
    )
    parser.add_argument(
        "--relay-messages",
        type=int,
        help="relay: newsletter size M (default: scaled; quick 500)",
    )
    args = parser.parse_args(argv)
    databases = [d.strip() for d in args.databases.split(",") if d.strip()]
    unknown = [d for d in databases if d not in DATABASES]
    if unknown or not databases:
        parser.error(f"unknown database(s): {', '.join(unknown) or '(none)'}")
    if args.tuned:
        databases += [f"{d}-tuned" for d in databases]
    figures = [f.strip() for f in args.figures.split(",") if f.strip()]
    unknown = [f for f in figures if f not in FIGURES]
    if unknown or not figures:
        parser.error(f"unknown figure(s): {', '.join(unknown) or '(none)'}")
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
    plan: dict[str, Any] = {}
    if "suite" in figures:
        # RUN_BUDGET is for the two default databases (and at least that).
        plan["suite"] = {"left": RUN_BUDGET[mode] * max(len(databases), 2) / 2}
    if "relay" in figures:
        plan["relay"] = relay_plan(args, mode)
        results["relay"] = {}
    if "report" in figures:
        plan["report"] = {"budget": REPORT_BUDGET[mode]}
        results["report"] = {}
    try:
        for name in databases:
            ran = run_database(name, mode, workdir, plan)
            if "suite" in ran:
                results["databases"][name] = ran["suite"]
            if "relay" in ran:
                results["relay"][name] = ran["relay"]
            if "report" in ran:
                results["report"][name] = ran["report"]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results["seconds"] = round(time.monotonic() - started, 1)
    results["machine"].update(contention(ticks))
    tables = []
    if "suite" in figures:
        table, targets = render_table(results)
        results["targets"] = targets
        results["table"] = table
        tables.append(table)
    for figure, make_table in (("relay", relay_table), ("report", report_table)):
        if figure not in figures:
            continue
        text, rows = make_table(results[figure])
        results[f"{figure}_rows"] = rows
        results[f"{figure}_table"] = text
        if not tables:
            # The machine and versions lines; the suite's workload lines
            # describe figures that did not run.
            header = header_lines({**results, "databases": results[figure]})
            skip = ("Workload", "Each figure")
            header = [line for line in header if not line.startswith(skip)]
            text = "\n".join([*header, "", text])
        tables.append(text)
    print("\n\n".join(tables))
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(path)
    print(f"\nResults written to {path}", file=sys.stderr)
    failed = [name for name, r in results["databases"].items() if "error" in r]
    for figure in ("relay", "report"):
        failed += [name for name, r in results.get(figure, {}).items() if "error" in r]
    return 1 if failed else 0


def relay_plan(args: argparse.Namespace, mode: str) -> dict[str, Any]:
    """The relay figure's arguments and time bound, from the command line."""
    sizes = RelaySizes.quick() if mode == "quick" else RelaySizes.full()
    extra: list[str] = []
    if args.delays:
        sizes.delays = [float(d) for d in args.delays.split(",") if d.strip()]
        extra += ["--delays", args.delays]
    if args.connections:
        sizes.connections = args.connections
        extra += ["--connections", str(args.connections)]
    if args.relay_seconds:
        sizes.seconds = args.relay_seconds
        extra += ["--seconds", str(args.relay_seconds)]
    if args.relay_messages:
        sizes.messages = args.relay_messages
        extra += ["--messages", str(args.relay_messages)]
    return {"args": extra, "budget": sizes.budget()}


if __name__ == "__main__":
    sys.exit(main())
