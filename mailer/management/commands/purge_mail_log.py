"""Delete old MessageLog rows."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mailer.engine import purge_log
from mailer.models import LogResult


class Command(BaseCommand):
    help = "Delete mail log entries older than DAYS days (optionally of one result)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("days", type=float)
        parser.add_argument(
            "-r",
            "--result",
            choices=[label for label in LogResult.names],
            type=str.upper,
            help="Only entries with this result (e.g. sent, failed).",
        )

    def handle(self, *, days: float, result: str | None, **options: Any) -> None:
        if days < 0:
            raise CommandError("DAYS must be zero or more")
        deleted = purge_log(days, result=LogResult[result] if result else None)
        self.stdout.write(f"{deleted} log entr{'y' if deleted == 1 else 'ies'} deleted")
