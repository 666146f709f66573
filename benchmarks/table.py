"""A figure's table as data: sections of rows, one cell per database.

A figure module (``relay.py``) describes its rows; ``render_rows`` turns them
into the printed text and a list of dictionaries for the JSON, so the numbers
the README quotes can be checked against the data they came from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

LABEL_WIDTH = 48
VALUE_WIDTH = 26

NAMES = {
    "sqlite": "SQLite",
    "postgres": "PostgreSQL",
    "sqlite-tuned": "SQLite, tuned*",
    "postgres-tuned": "PostgreSQL, tuned*",
}


@dataclass
class Row:
    label: str
    #: one database's results -> (text, value the target is checked against)
    cell: Callable[[dict[str, Any]], tuple[str, float | None]]
    target: str = ""
    #: value -> target met? (None: this row has no target)
    meets: Callable[[float], bool] | None = None


def render_rows(
    results: dict[str, dict[str, Any]], sections: list[tuple[str, list[Row]]]
) -> tuple[str, list[dict[str, Any]]]:
    """Text of the table and its rows as data.

    ``results`` maps a database name to that database's results; a cell whose
    data is missing reads "-". Each data row is ``{"section", "label",
    "target", "cells": {database: {"text", "value", "met"}}}``."""
    names = list(results)
    header = "".join(f"{NAMES.get(n, n):<{VALUE_WIDTH}}" for n in names)
    lines = [f"{'':<{LABEL_WIDTH}}{header}target"]
    data: list[dict[str, Any]] = []
    for title, rows in sections:
        lines.append(title)
        for row in rows:
            cells: dict[str, dict[str, Any]] = {}
            texts = []
            for name in names:
                try:
                    text, value = row.cell(results[name])
                except (TypeError, KeyError, ZeroDivisionError):
                    text, value = "-", None
                met = None
                if row.meets is not None and value is not None:
                    met = bool(row.meets(value))
                    if not met:
                        text += " MISS"
                cells[name] = {"text": text, "value": value, "met": met}
                texts.append(f"{text:<{VALUE_WIDTH}}")
            label = f"  {row.label:<{LABEL_WIDTH - 2}}"
            lines.append(f"{label}{''.join(texts)}{row.target}")
            data.append(
                {
                    "section": title,
                    "label": row.label,
                    "target": row.target,
                    "cells": cells,
                }
            )
    if any(n.endswith("-tuned") for n in names):
        lines.append(
            "* tuned: PostgreSQL with fsync, synchronous_commit and "
            "full_page_writes off; SQLite with synchronous=NORMAL. Not durable; "
            "for comparison only."
        )
    return "\n".join(lines), data
