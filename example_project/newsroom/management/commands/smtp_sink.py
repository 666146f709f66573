"""A local SMTP server that prints each email as it arrives, for trying the
newsroom by hand: run it, click "Send email update" in the admin, then run
``process_mail_jobs`` and ``send_mail`` (settings send to 127.0.0.1:1025)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = (
        "Run an SMTP server on 127.0.0.1 that accepts all mail and prints one line "
        "per email (Ctrl-C stops it)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=1025)
        parser.add_argument(
            "--quiet", action="store_true", help="No line per email, only the total."
        )
        parser.add_argument(
            "--max-seconds",
            type=float,
            default=3600,
            help="Stop after this long (default an hour).",
        )

    def handle(
        self, *, port: int, quiet: bool, max_seconds: float, **options: Any
    ) -> None:
        # The behaviour (one line per message, Ctrl-C/SIGTERM handling, bounded
        # run) is mailer.testing.smtp's command line; this only makes it a
        # manage.py command. Messages are counted, not kept.
        from mailer.testing.smtp import main

        argv = ["--port", str(port), "--max-seconds", str(max_seconds), "--count-only"]
        if quiet:
            argv.append("--quiet")
        code = main(argv)
        if code:
            raise CommandError(
                f"The SMTP server stopped with code {code}", returncode=code
            )
