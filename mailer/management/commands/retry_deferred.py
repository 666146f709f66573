"""Put deferred mail back in the queue, due now."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from mailer.engine import retry_deferred


class Command(BaseCommand):
    help = "Make deferred (and held) messages due now. Backoff does this by itself too."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "-c",
            "--cron",
            type=int,
            default=0,
            help="django-mailer's option: 1 prints nothing when nothing was retried.",
        )

    def handle(self, *, cron: int = 0, **options: Any) -> None:
        count = retry_deferred()
        if count or not cron:
            self.stdout.write(f"{count} deferred message(s) queued again")
