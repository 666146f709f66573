"""The last send run's outcome, shared by every worker on every host.

``mailer_status`` reads it for monitoring: a relay that cannot be reached
shows up there (with its host and port) even when the worker that found out
runs on another machine. It is one row of ``WorkerState`` (key ``run:last``),
written after a run that did something or whose outcome changed, so an idle
worker writes nothing.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from django.db import DatabaseError
from django.utils import timezone

from mailer.sending.engine import SendResult

__all__ = ["last_run", "record_run"]

LAST_RUN = "run:last"

#: The stop reason the engine gives when the relay cannot be reached.
UNREACHABLE = "mail server unreachable"

# What this process wrote last (ok, error): an idle worker's empty runs
# rewrite nothing.
_written: dict[str, Any] = {}


def forget_written() -> None:
    """Forget what this process wrote last, so that the next ``record_run``
    writes whatever it records (a test that rolled the database back)."""
    _written.clear()


def relay() -> str:
    """``host:port`` of the sending backend (``?`` for a backend without
    them, e.g. an ESP's API)."""
    from mailer.sending.smtp import open_sending_backend

    try:
        backend = open_sending_backend()
    except Exception:  # noqa: BLE001 - a broken backend is reported elsewhere
        return "?"
    host, port = getattr(backend, "host", None), getattr(backend, "port", None)
    if host is None:
        return type(backend).__name__
    return f"{host}:{port}"


def record_run(result: SendResult) -> None:
    """Remember ``result`` as the last run (never raises: a worker whose
    database is down already says so in its own output)."""
    from mailer.models import WorkerState

    state = (result.error is None, result.error)
    busy = result.attempted or result.suppressed
    if not busy and _written.get("state") == state:
        return
    value = {
        "at": timezone.now().isoformat(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "ok": result.error is None,
        "stop_reason": result.stop_reason,
        "error": result.error,
        "relay": relay(),
        "sent": result.sent,
        "deferred": result.deferred,
        "failed": result.failed,
        "suppressed": result.suppressed,
    }
    try:
        WorkerState.objects.update_or_create(
            key=LAST_RUN, defaults={"value": value, "updated_at": timezone.now()}
        )
    except DatabaseError:
        return
    _written["state"] = state


def last_run() -> dict[str, Any] | None:
    """The last recorded run, or ``None`` before any."""
    from mailer.models import WorkerState

    row = WorkerState.objects.filter(key=LAST_RUN).values_list("value", flat=True)
    return next(iter(row), None)
