"""Delete old MessageLog rows (django-mailer's command, its default: successes)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mailer.models import LogResult

#: django-mailer's choices, then ours (one result each).
RESULTS: dict[str, list] = {
    "success": ["1"],
    "failure": ["3"],
    "all": ["1", "3"],
    **{name.lower(): [int(value)] for name, value in LogResult.__members__.items()},
}


class Command(BaseCommand):
    help = (
        "Delete mail log entries older than DAYS days: successes (the default, "
        "as django-mailer), failures (deferred or failed attempts), all of "
        "those, or one result of ours."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("days", type=float)
        parser.add_argument(
            "-r",
            "--result",
            choices=list(RESULTS),
            type=str.lower,
            default="success",
            help="Which entries: success (default), failure, all (success and "
            "failure, as django-mailer), or one of "
            + ", ".join(name.lower() for name in LogResult.names)
            + ".",
        )

    def handle(self, *, days: float, result: str, **options: Any) -> None:
        if days < 0:
            raise CommandError("DAYS must be zero or more")
        from mailer.models import MessageLog

        deleted = MessageLog.objects.purge_old_entries(days, RESULTS[result])
        self.stdout.write(f"{deleted} log entr{'y' if deleted == 1 else 'ies'} deleted")
