"""Send queued mail: ``manage.py send_mail`` from cron, every minute."""

from __future__ import annotations

import signal
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mailer.conf import settings
from mailer.engine import SendResult, send_queued
from mailer.progress import SendProgress


class Command(BaseCommand):
    help = (
        "Send queued email by priority over one connection, within the limits. "
        "Exits non-zero when the mail server cannot be reached."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--max-messages",
            type=int,
            help="Send at most this many (MAILER_EMAIL_MAX_BATCH).",
        )
        parser.add_argument(
            "--max-seconds", type=float, help="Stop claiming new mail after this long."
        )
        parser.add_argument(
            "--throttle", type=float, help="At most this many messages per second."
        )
        parser.add_argument("--batch-size", type=int, help="Messages claimed at once.")
        parser.add_argument(
            "--loop",
            action="store_true",
            help="Run as a long-lived worker; sleep when idle; stop on SIGTERM.",
        )
        parser.add_argument(
            "--idle-seconds",
            type=float,
            help="With --loop: sleep this long when the queue is empty.",
        )

    def handle(
        self,
        *,
        max_messages: int | None,
        max_seconds: float | None,
        throttle: float | None,
        batch_size: int | None,
        loop: bool,
        idle_seconds: float | None,
        **options: Any,
    ) -> None:
        for name, value in (
            ("--max-messages", max_messages),
            ("--max-seconds", max_seconds),
            ("--throttle", throttle),
            ("--batch-size", batch_size),
        ):
            if value is not None and value <= 0:
                raise CommandError(f"{name} must be positive, not {value}")
        stop_requested = False

        def request_stop(signum: int, frame: Any) -> None:
            # Finish the message in flight, give the rest of the batch back.
            nonlocal stop_requested
            stop_requested = True

        previous = signal.signal(signal.SIGTERM, request_stop)
        try:
            while True:
                result = send_queued(
                    max_messages=max_messages,
                    max_seconds=max_seconds,
                    throttle=throttle,
                    batch_size=batch_size,
                    should_stop=lambda: stop_requested,
                    on_progress=SendProgress(max_messages),
                )
                if not loop or result.attempted or result.suppressed or result.error:
                    self._print(result)
                if result.error and not loop:
                    raise CommandError(result.error, returncode=2)
                if not loop or stop_requested:
                    break
                if (
                    result.stop_reason == "queue empty"
                    or result.error
                    or (result.wait_seconds)
                ):
                    idle = idle_seconds or settings.LOOP_IDLE_SECONDS
                    # A relay pause or a full rate window: sleep until it
                    # ends instead of waking every few seconds to find it so.
                    idle = max(idle, min(result.wait_seconds or 0, 86400))
                    deadline = time.monotonic() + idle
                    while not stop_requested and time.monotonic() < deadline:
                        time.sleep(min(0.2, idle))
        finally:
            signal.signal(signal.SIGTERM, previous)

    def _print(self, result: SendResult) -> None:
        self.stdout.write(result.summary())
