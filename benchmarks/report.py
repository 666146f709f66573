"""The suite's results table, with the targets each figure is held to.

The table is data: :func:`sections` lists its rows (label, the key path to
the value in one database's results, its unit, the target); :func:`render_table`
prints them for every database and returns the targets as a list for the
JSON."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

LABEL_WIDTH = 52
VALUE_WIDTH = 27

NAMES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}


def get(data: Any, *keys: str | int) -> Any:
    for key in keys:
        if isinstance(data, list) and isinstance(key, int) and key < len(data):
            data = data[key]
        elif isinstance(data, dict) and key in data:
            data = data[key]
        else:
            return None
    return data


def _rate(value: float) -> str:
    return f"{value:,.0f}/s"


def _seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


#: How a value of each unit is printed.
FORMATS: dict[str, Callable[[float], str]] = {
    "/s": _rate,
    "s": _seconds,
    "ms": lambda v: f"{v:.2f} ms",
    "MB": lambda v: f"{v:.1f} MB",
    "B": lambda v: f"{v:.0f} B",
    "": lambda v: f"{v:.2f}",
}

Cell = Callable[[dict[str, Any]], tuple[str, "float | None"]]
Meets = Callable[[float, str, dict[str, Any]], "bool | None"]


@dataclass
class Row:
    """One line of the table: ``key`` is the path to the value in one
    database's results (``("limit", "one", "rate")``), printed in ``unit``
    (a key of ``FORMATS``); a row whose text is derived from several values
    (a ratio) gives ``cell`` instead. ``meets(value, database, results)``
    says whether ``target`` is met (None: no target on that database)."""

    label: str
    key: tuple[str, ...] = ()
    unit: str = ""
    target: str = ""
    meets: Meets | None = None
    cell: Cell | None = None

    def render(self, r: dict[str, Any]) -> tuple[str, float | None]:
        """``(text, value)`` for one database's results ``r``; "-" and None
        when the value is missing."""
        if self.cell is not None:
            return self.cell(r)
        value = get(r, *self.key)
        return ("-", None) if value is None else (FORMATS[self.unit](value), value)


def below(bound: float) -> Meets:
    return lambda value, db, r: value < bound


def at_least(bound: float, only: str | None = None) -> Meets:
    """Met at ``bound`` or above; with ``only``, a target on that database
    only."""
    return lambda value, db, r: (
        None if only is not None and db != only else value >= bound
    )


def _limit_one(r: dict[str, Any]) -> float | None:
    return get(r, "limit", "one", "rate")


def _limit_two(r: dict[str, Any]) -> float | None:
    return get(r, "limit", "two", "rate")


def _two_connections(r: dict[str, Any]) -> tuple[str, float | None]:
    one, two = _limit_one(r), _limit_two(r)
    if not one or not two:
        return "-", None
    return f"{_rate(two)} {two / one:.2f}x", None


def _ratio(mode: str) -> Cell:
    """The rate of sending ``mode`` and its ratio to the one-connection
    limit (the value the target reads)."""

    def cell(r: dict[str, Any]) -> tuple[str, float | None]:
        rate = get(r, "sending", mode, "rate")
        one = _limit_one(r)
        if rate is None:
            return "-", None
        if not one:
            return _rate(rate), None
        return f"{_rate(rate)} {rate / one:.2f}x", rate / one

    return cell


def _workers(mode: str) -> Cell:
    """Like :func:`_ratio`, plus the ratio to the two-connection limit (the
    value the target reads)."""

    def cell(r: dict[str, Any]) -> tuple[str, float | None]:
        rate = get(r, "sending", mode, "rate")
        one, two = _limit_one(r), _limit_two(r)
        if rate is None:
            return "-", None
        if not one or not two:
            return _rate(rate), None
        return f"{_rate(rate)} {rate / one:.2f}x ({rate / two:.2f}x2)", rate / two

    return cell


def _rss_flat(value: float, db: str, r: dict[str, Any]) -> bool | None:
    sizes = get(r, "sizes", "rss") or []
    if len(sizes) < 2:
        return None
    small = get(r, "memory", str(sizes[0]), "peak_rss_mb")
    large = get(r, "memory", str(sizes[-1]), "peak_rss_mb")
    if small is None or large is None:
        return None
    return large < 100 and large <= small * 1.1 + 2


def _idle(command: str) -> Cell:
    def cell(r: dict[str, Any]) -> tuple[str, float | None]:
        wall = get(r, "idle", command, "wall")
        cpu = get(r, "idle", command, "cpu")
        if wall is None or cpu is None:
            return "-", None
        return f"{wall:.2f} s / {cpu:.2f} s CPU", wall

    return cell


def _in_process_idle(r: dict[str, Any]) -> tuple[str, float | None]:
    ms = get(r, "idle", "send_queued", "ms")
    queries = get(r, "idle", "send_queued", "queries")
    if ms is None:
        return "-", None
    return f"{ms:.1f} ms, {queries} quer{'y' if queries == 1 else 'ies'}", ms


def sections(sizes: dict[str, Any]) -> list[tuple[str, list[Row]]]:
    """The suite's table for a run of these sizes: (title, rows) in order."""
    expand = sizes.get("expand", [])
    rss = sizes.get("rss", [0, 0])
    probes = sizes.get("probes", 20)
    half = ">= 0.5x (aim 0.8x)"
    return [
        (
            "1. Limit: the engine's bytes, plain smtplib loop, no database "
            f"({sizes.get('limit', 0):,} messages)",
            [
                Row("one connection", ("limit", "one", "rate"), "/s"),
                Row("two connections in two processes", cell=_two_connections),
                Row(
                    "SMTP sink CPU per message (one connection)",
                    ("limit", "one", "sink_cpu_ms_per_message"),
                    "ms",
                ),
                Row(
                    "smtplib loop CPU per message (one connection)",
                    ("limit", "one", "client_cpu_ms_per_message"),
                    "ms",
                ),
            ],
        ),
        (
            f"2. Admin click, {sizes.get('subscribers', 0):,} subscribers "
            "(test Client, real action)",
            [
                Row(
                    "confirmation page POST",
                    ("admin", "confirm_seconds"),
                    "s",
                    "< 1 s",
                    below(1.0),
                ),
                Row(
                    '"Yes, I\'m sure" POST (queues the job)',
                    ("admin", "yes_seconds"),
                    "s",
                    "< 1 s",
                    below(1.0),
                ),
            ],
        ),
        (
            "3. Expansion: process_mail_jobs",
            [
                *(
                    Row(
                        f"{size:,} recipients",
                        ("expansion", str(size), "rate"),
                        "/s",
                        ">= 40,000/s on SQLite",
                        at_least(40_000, only="sqlite"),
                    )
                    for size in expand
                ),
                Row(
                    "storage per queued job message",
                    (
                        "expansion",
                        str(expand[-1] if expand else ""),
                        "bytes_per_message",
                    ),
                    "B",
                    "< 300 B",
                    below(300),
                ),
            ],
        ),
        (
            f"4. Sending {sizes.get('send', 0):,} queued job messages "
            "(x: of the one-connection limit; x2: of the two-connection limit)",
            [
                Row(
                    "1 worker, send_queued() in-process",
                    target=half,
                    meets=at_least(0.5),
                    cell=_ratio("in_process"),
                ),
                Row(
                    "1 worker, manage.py send_mail",
                    target=half,
                    meets=at_least(0.5),
                    cell=_ratio("send_mail"),
                ),
                Row(
                    "2 send_mail workers",
                    target="near 2-conn limit (>= 0.8x2)",
                    meets=at_least(0.8),
                    cell=_workers("workers_2"),
                ),
                Row("4 send_mail workers", cell=_workers("workers_4")),
                Row(
                    "worker CPU per message, in-process",
                    ("sending", "in_process", "cpu_ms_per_message"),
                    "ms",
                ),
                Row(
                    "worker CPU per message, send_mail (with start-up)",
                    ("sending", "send_mail", "cpu_ms_per_message"),
                    "ms",
                ),
                Row(
                    f"SQL statements per message ({sizes.get('sql', 0):,} sent)",
                    ("sql", "per_message"),
                ),
                Row(
                    f"send_mail peak RSS, {rss[0]:,} queued",
                    ("memory", str(rss[0]), "peak_rss_mb"),
                    "MB",
                ),
                Row(
                    f"send_mail peak RSS, {rss[-1]:,} queued",
                    ("memory", str(rss[-1]), "peak_rss_mb"),
                    "MB",
                    "< 100 MB, flat",
                    _rss_flat,
                ),
            ],
        ),
        (
            f"5. High priority while a {sizes.get('overtake', 0):,}-recipient "
            "job drains (send_mail to the sink)",
            [
                Row(
                    f"median of {probes}",
                    ("overtaking", "median"),
                    "s",
                    "< 2 s",
                    below(2.0),
                ),
                Row(
                    f"worst of {probes}",
                    ("overtaking", "worst"),
                    "s",
                    "< 2 s",
                    below(2.0),
                ),
            ],
        ),
        (
            "6. Idle: empty queue",
            [
                Row(
                    "manage.py send_mail (process, wall / CPU)",
                    cell=_idle("send_mail"),
                ),
                Row(
                    "manage.py process_mail_jobs (process)",
                    cell=_idle("process_mail_jobs"),
                ),
                Row("send_queued() in-process", cell=_in_process_idle),
            ],
        ),
    ]


def header_lines(results: dict[str, Any]) -> list[str]:
    m = results.get("machine", {})
    dbs = results.get("databases", {})
    versions = [
        f"Python {m.get('python')}",
        f"Django {m.get('django')}",
        f"SQLite {get(dbs, 'sqlite', 'server_version') or m.get('sqlite')}",
    ]
    pg = get(dbs, "postgres", "server_version")
    if pg:
        versions.append(f"PostgreSQL {pg}")
    first = next((r for r in dbs.values() if "content" in r), {})
    content = first.get("content", {})
    wire = get(first, "limit", "message", "bytes")
    lines = [
        f"django-mailer-jobs benchmarks, {results.get('mode')} run "
        f"({results.get('seconds', 0) / 60:.1f} min, {results.get('started_at')})",
    ]
    if results.get("mode") == "quick":
        lines.append(
            "QUICK MODE: smaller sizes (see each heading) and 1-2 repetitions; "
            "the targets are for the full sizes."
        )
    load = m.get("load_average_at_start") or [0]
    busy = ""
    if "steal_percent" in m:
        busy = (
            f"; during the run: CPUs {m['busy_percent']:.0f}% busy "
            f"(this run included), {m['steal_percent']:.1f}% stolen by the host"
        )
    lines += [
        f"Machine: {m.get('cpu')}, {m.get('cores')} cores, "
        f"{m.get('memory_gb')} GB; {m.get('system')}; load {load[0]:.2f} at start"
        + busy,
        "Versions: " + ", ".join(versions),
        "Workload: multipart, "
        f"{content.get('text_bytes', 0) / 1024:.1f} KB text + "
        f"{content.get('html_bytes', 0) / 1024:.1f} KB HTML, one recipient each, "
        "personalised (name, unsubscribe URL, own List-Unsubscribe)"
        + (f"; {wire / 1024:.1f} KB on the wire" if wire else ""),
        f"Each figure: median of {first.get('sizes', {}).get('reps', '?')} "
        "repetition(s); SMTP sink: python -m benchmarks.fastsink, "
        "own process, 127.0.0.1",
    ]
    return lines


def render_table(results: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    dbs = results.get("databases", {})
    names = list(dbs)
    first = next((r for r in dbs.values() if "sizes" in r), {})
    lines = header_lines(results)
    lines.append("")
    columns = "".join(f"{NAMES.get(n, n):<{VALUE_WIDTH}}" for n in names)
    lines.append(f"{'':<{LABEL_WIDTH}}{columns}target")
    targets: list[dict[str, Any]] = []
    for title, rows in sections(first.get("sizes", {})):
        lines.append(title)
        for row in rows:
            cells = []
            for name in names:
                r = dbs[name]
                try:
                    text, value = row.render(r)
                except (TypeError, ZeroDivisionError, KeyError):
                    text, value = "-", None
                met = None
                if row.meets is not None and value is not None:
                    met = row.meets(value, name, r)
                if met is not None:
                    targets.append(
                        {
                            "database": name,
                            "figure": f"{title.split(' (')[0]}: {row.label}",
                            "value": value,
                            "text": text,
                            "target": row.target,
                            "met": met,
                        }
                    )
                    if not met:
                        text += " MISS"
                cells.append(f"{text:<{VALUE_WIDTH}}")
            label = f"  {row.label:<{LABEL_WIDTH - 2}}"
            lines.append(f"{label}{''.join(cells)}{row.target}")
    errors = [(n, r["error"]) for n, r in dbs.items() if "error" in r]
    for name, r in dbs.items():
        for key, part in r.items():
            if isinstance(part, dict) and "error" in part:
                errors.append((f"{name} {key}", part["error"]))
    for where, error in errors:
        lines.append("")
        lines.append(f"ERROR in {where}:")
        lines.append(error.rstrip())
    missed = [t for t in targets if not t["met"]]
    lines.append("")
    lines.append(
        f"Targets met: {len(targets) - len(missed)} of {len(targets)}"
        + (". Missed:" if missed else ".")
    )
    for t in missed:
        lines.append(
            f"  {NAMES.get(t['database'], t['database'])}, {t['figure']}: "
            f"{t['text']} (target {t['target']})"
        )
    return "\n".join(lines), targets
