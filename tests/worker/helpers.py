"""Shared pieces of the worker tests: what they queue, in tests/worker/ (the
worker in this process, the tasks) and tests/system/test_long_running_workers.py
(the workers as real processes)."""

from __future__ import annotations

import mailer
from mailer.jobs.services import RenderedEmail, create_job


def queue_reset(address: str = "reader@example.com") -> None:
    """One high-priority single email ("Reset your password") to ``address``."""
    mailer.send_mail(
        "Reset your password", "Body", "news@example.com", [address], priority="high"
    )


def queue(address: str = "reader@example.com", **kwargs) -> None:
    """One single email ("Reset") to ``address``; ``kwargs`` go to
    ``mailer.send_mail`` (e.g. ``priority``)."""
    mailer.send_mail("Reset", "Body", "news@example.com", [address], **kwargs)


def confirm_job(n: int) -> list[str]:
    """A confirmed job ("Issue 7") to ``n`` readers; returns their addresses,
    reader0@example.com to reader{n-1}@example.com."""
    addresses = [f"reader{i}@example.com" for i in range(n)]
    create_job(
        content=RenderedEmail(subject="Issue 7", body_text="Hello"),
        recipients=addresses,
    )
    return addresses
