"""The results table, with the targets each figure is held to."""

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


@dataclass
class Row:
    label: str
    #: database results -> (text, value compared with the target or None)
    cell: Callable[[dict[str, Any]], tuple[str, float | None]]
    target: str = ""
    #: (value, database name, database results) -> met? (None: no target here)
    meets: Callable[[float, str, dict[str, Any]], bool | None] | None = None


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}/s"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _limit_one(r: dict[str, Any]) -> float | None:
    return get(r, "limit", "one", "rate")


def _limit_two(r: dict[str, Any]) -> float | None:
    return get(r, "limit", "two", "rate")


def _ratio_cell(r: dict[str, Any], mode: str) -> tuple[str, float | None]:
    rate = get(r, "sending", mode, "rate")
    limit = _limit_one(r)
    if rate is None or not limit:
        return _rate(rate), None
    return f"{rate:,.0f}/s {rate / limit:.2f}x", rate / limit


def _workers_cell(r: dict[str, Any], mode: str) -> tuple[str, float | None]:
    rate = get(r, "sending", mode, "rate")
    one, two = _limit_one(r), _limit_two(r)
    if rate is None or not one or not two:
        return _rate(rate), None
    return f"{rate:,.0f}/s {rate / one:.2f}x ({rate / two:.2f}x2)", rate / two


def _rss_cell(r: dict[str, Any], index: int) -> tuple[str, float | None]:
    sizes = get(r, "sizes", "rss") or []
    if len(sizes) <= index:
        return "-", None
    value = get(r, "memory", str(sizes[index]), "peak_rss_mb")
    return ("-", None) if value is None else (f"{value:.1f} MB", value)


def _rss_flat(r: dict[str, Any]) -> bool | None:
    sizes = get(r, "sizes", "rss") or []
    if len(sizes) < 2:
        return None
    small = get(r, "memory", str(sizes[0]), "peak_rss_mb")
    large = get(r, "memory", str(sizes[-1]), "peak_rss_mb")
    if small is None or large is None:
        return None
    return large < 100 and large <= small * 1.1 + 2


def _expansion_cell(r: dict[str, Any], index: int) -> tuple[str, float | None]:
    sizes = get(r, "sizes", "expand") or []
    if len(sizes) <= index:
        return "-", None
    rate = get(r, "expansion", str(sizes[index]), "rate")
    return _rate(rate), rate


def _expansion_target(value: float, db: str, r: dict[str, Any]) -> bool | None:
    return value >= 40_000 if db == "sqlite" else None


def _storage_cell(r: dict[str, Any]) -> tuple[str, float | None]:
    sizes = get(r, "sizes", "expand") or []
    if not sizes:
        return "-", None
    value = get(r, "expansion", str(sizes[-1]), "bytes_per_message")
    return ("-", None) if value is None else (f"{value:.0f} B", value)


def _idle_cell(r: dict[str, Any], command: str) -> tuple[str, float | None]:
    wall = get(r, "idle", command, "wall")
    cpu = get(r, "idle", command, "cpu")
    if wall is None:
        return "-", None
    return f"{wall:.2f} s / {cpu:.2f} s CPU", wall


def _in_process_idle(r: dict[str, Any]) -> tuple[str, float | None]:
    ms = get(r, "idle", "send_queued", "ms")
    queries = get(r, "idle", "send_queued", "queries")
    if ms is None:
        return "-", None
    return f"{ms:.1f} ms, {queries} quer{'y' if queries == 1 else 'ies'}", ms


def _simple(
    *keys: str | int, fmt: Callable[[float], str]
) -> Callable[[dict[str, Any]], tuple[str, float | None]]:
    def cell(r: dict[str, Any]) -> tuple[str, float | None]:
        value = get(r, *keys)
        return ("-", None) if value is None else (fmt(value), value)

    return cell


def _sections(sizes: dict[str, Any]) -> list[tuple[str, list[Row]]]:
    n_admin = sizes.get("subscribers", 0)
    expand = sizes.get("expand", [])
    rss = sizes.get("rss", [0, 0])
    send = sizes.get("send", 0)
    probes = sizes.get("probes", 20)
    overtake = sizes.get("overtake", 0)
    limit_messages = sizes.get("limit", 0)
    below = lambda bound: lambda value, db, r: value < bound  # noqa: E731
    return [
        (
            f"1. Limit: the engine's bytes, plain smtplib loop, no database "
            f"({limit_messages:,} messages)",
            [
                Row("one connection", lambda r: (_rate(_limit_one(r)), None)),
                Row(
                    "two connections in two processes",
                    lambda r: (
                        f"{_rate(_limit_two(r))} {_limit_two(r) / _limit_one(r):.2f}x"
                        if _limit_one(r) and _limit_two(r)
                        else "-",
                        None,
                    ),
                ),
                Row(
                    "SMTP sink CPU per message (one connection)",
                    _simple(
                        "limit",
                        "one",
                        "sink_cpu_ms_per_message",
                        fmt=lambda v: f"{v:.2f} ms",
                    ),
                ),
                Row(
                    "smtplib loop CPU per message (one connection)",
                    _simple(
                        "limit",
                        "one",
                        "client_cpu_ms_per_message",
                        fmt=lambda v: f"{v:.2f} ms",
                    ),
                ),
            ],
        ),
        (
            f"2. Admin click, {n_admin:,} subscribers (test Client, real action)",
            [
                Row(
                    "confirmation page POST",
                    _simple("admin", "confirm_seconds", fmt=_seconds),
                    "< 1 s",
                    below(1.0),
                ),
                Row(
                    '"Yes, I\'m sure" POST (queues the job)',
                    _simple("admin", "yes_seconds", fmt=_seconds),
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
                        lambda r, i=i: _expansion_cell(r, i),
                        ">= 40,000/s on SQLite",
                        _expansion_target,
                    )
                    for i, size in enumerate(expand)
                ),
                Row(
                    "storage per queued job message",
                    _storage_cell,
                    "< 300 B",
                    below(300),
                ),
            ],
        ),
        (
            f"4. Sending {send:,} queued job messages "
            "(x: of the one-connection limit; x2: of the two-connection limit)",
            [
                Row(
                    "1 worker, send_queued() in-process",
                    lambda r: _ratio_cell(r, "in_process"),
                    ">= 0.5x (aim 0.8x)",
                    lambda value, db, r: value >= 0.5,
                ),
                Row(
                    "1 worker, manage.py send_mail",
                    lambda r: _ratio_cell(r, "send_mail"),
                    ">= 0.5x (aim 0.8x)",
                    lambda value, db, r: value >= 0.5,
                ),
                Row(
                    "2 send_mail workers",
                    lambda r: _workers_cell(r, "workers_2"),
                    "near 2-conn limit (>= 0.8x2)",
                    lambda value, db, r: value >= 0.8,
                ),
                Row("4 send_mail workers", lambda r: _workers_cell(r, "workers_4")),
                Row(
                    "worker CPU per message, in-process",
                    _simple(
                        "sending",
                        "in_process",
                        "cpu_ms_per_message",
                        fmt=lambda v: f"{v:.2f} ms",
                    ),
                ),
                Row(
                    "worker CPU per message, send_mail (with start-up)",
                    _simple(
                        "sending",
                        "send_mail",
                        "cpu_ms_per_message",
                        fmt=lambda v: f"{v:.2f} ms",
                    ),
                ),
                Row(
                    f"SQL statements per message ({sizes.get('sql', 0):,} sent)",
                    _simple("sql", "per_message", fmt=lambda v: f"{v:.2f}"),
                ),
                Row(
                    f"send_mail peak RSS, {rss[0]:,} queued",
                    lambda r: _rss_cell(r, 0),
                ),
                Row(
                    f"send_mail peak RSS, {rss[-1]:,} queued",
                    lambda r: _rss_cell(r, len(rss) - 1),
                    "< 100 MB, flat",
                    lambda value, db, r: _rss_flat(r),
                ),
            ],
        ),
        (
            f"5. High priority while a {overtake:,}-recipient job drains "
            "(send_mail to the sink)",
            [
                Row(
                    f"median of {probes}",
                    _simple("overtaking", "median", fmt=_seconds),
                    "< 2 s",
                    below(2.0),
                ),
                Row(
                    f"worst of {probes}",
                    _simple("overtaking", "worst", fmt=_seconds),
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
                    lambda r: _idle_cell(r, "send_mail"),
                ),
                Row(
                    "manage.py process_mail_jobs (process)",
                    lambda r: _idle_cell(r, "process_mail_jobs"),
                ),
                Row("send_queued() in-process", _in_process_idle),
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
    for title, rows in _sections(first.get("sizes", {})):
        lines.append(title)
        for row in rows:
            cells = []
            for name in names:
                r = dbs[name]
                try:
                    text, value = row.cell(r)
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
