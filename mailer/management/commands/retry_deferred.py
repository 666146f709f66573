"""Put deferred mail back in the queue, due now; ``--in-doubt`` releases mail
held "in doubt, not retried"."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from mailer.sending.engine import release_in_doubt, retry_deferred


class Command(BaseCommand):
    help = (
        "Make deferred (and held) messages due now. Backoff does this by itself "
        "too. With --in-doubt: give messages held 'in doubt, not retried' one "
        "more try (each may deliver one more copy)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "-c",
            "--cron",
            type=int,
            default=0,
            help="django-mailer's option: 1 prints nothing when nothing was retried.",
        )
        parser.add_argument(
            "--in-doubt",
            action="store_true",
            help="Release messages held in doubt (the relay went silent after "
            "their DATA) instead: one more try each, same Message-ID.",
        )

    def handle(self, *, in_doubt: bool = False, cron: int = 0, **options: Any) -> None:
        if in_doubt:
            count = release_in_doubt()
            self.stdout.write(f"{count} message(s) in doubt released for one more try")
            return
        count = retry_deferred()
        if count or not cron:
            self.stdout.write(f"{count} deferred message(s) queued again")
