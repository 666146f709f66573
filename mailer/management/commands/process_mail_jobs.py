"""Expand pending jobs into one queued message per recipient."""

from __future__ import annotations

import signal
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mailer.jobs.expand import expand_pending_jobs
from mailer.jobs.progress import report_progress


class Command(BaseCommand):
    help = "Expand pending mail jobs into one message per recipient (resumable)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--max-seconds", type=float, help="Stop after this long.")
        parser.add_argument(
            "--chunk-size", type=int, help="Recipients committed at once."
        )

    def handle(
        self, *, max_seconds: float | None, chunk_size: int | None, **options: Any
    ) -> None:
        if max_seconds is not None and max_seconds <= 0:
            raise CommandError("--max-seconds must be positive")
        if chunk_size is not None and chunk_size <= 0:
            raise CommandError("--chunk-size must be positive")
        stop_requested = False

        def request_stop(signum: int, frame: Any) -> None:
            nonlocal stop_requested
            stop_requested = True

        previous = signal.signal(signal.SIGTERM, request_stop)
        try:
            result = expand_pending_jobs(
                max_seconds=max_seconds,
                chunk_size=chunk_size,
                should_stop=lambda: stop_requested,
                on_chunk=report_progress,
            )
        finally:
            signal.signal(signal.SIGTERM, previous)
        self.stdout.write(result.summary())
