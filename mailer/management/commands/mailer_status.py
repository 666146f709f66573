"""Print the queue: by priority and status, the oldest due message, the jobs,
the last run. For monitoring: ``--json``, and exit status 2 when unhealthy."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mailer.conf import conf
from mailer.status import queue_status


class Command(BaseCommand):
    help = (
        "Show the mail queue by priority and status, per-job progress and the "
        "last send run. Exits with status 2 when the oldest due message is "
        "older than --max-age seconds or the last run could not reach the relay."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--json", action="store_true", help="Print one JSON object instead."
        )
        parser.add_argument(
            "--max-age",
            type=float,
            help="Unhealthy when the oldest due message has waited longer "
            "(seconds; default MAILER_STATUS_MAX_AGE, unset: no limit).",
        )

    def handle(self, *, json: bool, max_age: float | None, **options: Any) -> None:
        if max_age is None:
            max_age = conf.MAILER_STATUS_MAX_AGE
        if max_age is not None and max_age < 0:
            raise CommandError("--max-age must be zero or more")
        status = queue_status()
        problems = status.problems(max_age=max_age)
        if json:
            self.stdout.write(_dumps(status.as_json(max_age=max_age)))
        else:
            self.stdout.write(status.render())
        if problems:
            raise CommandError("; ".join(problems), returncode=2)


def _dumps(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)
