"""Drop the body of sent single mail after its retention."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mailer.retention import purge_sent_bodies


class Command(BaseCommand):
    help = (
        "Drop the stored body of single mail sent more than "
        "MAILER_SENT_BODY_RETENTION_SECONDS ago (it may hold live links such as "
        "password resets). send_mail does the same at the end of each run."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--seconds",
            type=float,
            help="Retention in seconds instead of the setting (0: every sent body).",
        )

    def handle(self, *, seconds: float | None, **options: Any) -> None:
        if seconds is not None and seconds < 0:
            raise CommandError("--seconds must be zero or more")
        dropped = purge_sent_bodies(seconds=seconds)
        self.stdout.write(
            f"{dropped} sent email bod{'y' if dropped == 1 else 'ies'} dropped"
        )
