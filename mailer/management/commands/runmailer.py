"""``manage.py runmailer``: django-mailer's long-lived worker, which here
also expands confirmed jobs and wakes within a second of new mail."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mailer.worker.loop import Worker, stop_on_signals


class Command(BaseCommand):
    help = (
        "Run the mail worker: expand confirmed jobs and send due mail, then "
        "wait for more (PostgreSQL NOTIFY, or a short poll elsewhere; at most "
        "MAILER_EMPTY_QUEUE_SLEEP seconds). Stops cleanly on SIGTERM."
    )
    listen: bool | None = None

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--idle-seconds",
            type=float,
            help="Longest wait between runs (default MAILER_EMPTY_QUEUE_SLEEP).",
        )
        parser.add_argument(
            "--throttle", type=float, help="At most this many messages per second."
        )

    def handle(
        self, *, idle_seconds: float | None, throttle: float | None, **options: Any
    ) -> None:
        for name, value in (("--idle-seconds", idle_seconds), ("--throttle", throttle)):
            if value is not None and value <= 0:
                raise CommandError(f"{name} must be positive, not {value}")
        from django.core.exceptions import ImproperlyConfigured

        try:
            worker = Worker(
                listen=self.listen,
                idle_seconds=idle_seconds,
                write=self._write,
                send_options={"throttle": throttle},
            )
        except ImproperlyConfigured as error:
            raise CommandError(str(error)) from error
        self._write(
            f"Mail worker started ({worker.description}); stop with SIGTERM or "
            "CONTROL-C."
        )
        with stop_on_signals(worker):
            stats = worker.run()
        self._write(f"Mail worker stopped: {stats.sent} sent in {stats.drains} run(s).")

    def _write(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()
