"""``DATABASE_URL`` -> the ``DATABASES`` entry of the tests and the benchmarks
(dj-database-url), with the SQLite options a queue with several workers
needs."""

import os
import tempfile
from pathlib import Path

import dj_database_url


def database(default_sqlite_name: str) -> dict:
    """``DATABASE_URL`` as dj-database-url reads it (``sqlite:////abs/path``,
    ``postgres://user@host:port/name``; ``tests/postgres.py`` sets it), else
    the SQLite file ``<default_sqlite_name>.sqlite3`` in the working
    directory."""
    entry = dj_database_url.config(
        default=f"sqlite:///{Path.cwd() / (default_sqlite_name + '.sqlite3')}"
    )
    if entry["ENGINE"] == "django.db.backends.sqlite3":
        entry.update(
            # WAL lets readers and the one writer work at once; a generous
            # timeout lets several send_mail workers queue for the write lock
            # instead of failing with "database is locked".
            OPTIONS={
                "timeout": 30,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
            },
            # A file, never ":memory:", so that worker processes started by
            # the tests see the same test database; one per test run, so that
            # runs side by side do not share it.
            TEST={
                "NAME": os.path.join(
                    tempfile.gettempdir(), f"mailer-test-{os.getpid()}.sqlite3"
                )
            },
        )
    return entry
