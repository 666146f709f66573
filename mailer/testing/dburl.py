"""``DATABASE_URL`` -> a Django ``DATABASES`` entry, for tests, benchmarks and
the example project (sqlite:///path or postgres://user@host:port/name)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = ["database_from_url"]


def database_from_url(url: str | None, default_sqlite_name: str) -> dict[str, Any]:
    """A ``DATABASES`` entry for ``url`` (``sqlite:///path`` or
    ``postgres://user:password@host:port/name``); no URL means the SQLite file
    ``<default_sqlite_name>.sqlite3`` in the working directory. SQLite gets
    WAL and a 30 s busy timeout, and a per-process test database file.

    :raises ValueError: another URL scheme.
    """
    if not url or url.startswith("sqlite"):
        # sqlite:///relative.db or sqlite:////absolute/path.db
        path = urlsplit(url).path[1:] if url else ""
        name = path or str(Path.cwd() / f"{default_sqlite_name}.sqlite3")
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": name,
            # WAL lets readers and the one writer work at once; a generous
            # timeout lets several send_mail workers queue for the write lock
            # instead of failing with "database is locked".
            "OPTIONS": {
                "timeout": 30,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
            },
            # A file, never ":memory:", so that worker processes started by the
            # tests see the same test database; one per test run, so that runs
            # side by side do not share it.
            "TEST": {
                "NAME": os.path.join(
                    tempfile.gettempdir(), f"mailer-test-{os.getpid()}.sqlite3"
                )
            },
        }
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ValueError(f"Unsupported DATABASE_URL scheme {parts.scheme!r}")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
    }
