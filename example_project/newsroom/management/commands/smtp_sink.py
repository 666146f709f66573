"""Run a local SMTP server that prints each email as it arrives."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Run an SMTP server on 127.0.0.1 that shows mail arriving (Ctrl-C stops)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=1025)
        parser.add_argument("--max-seconds", type=float, default=3600)

    def handle(self, *, port: int, max_seconds: float, **options: Any) -> None:
        from mailer.testing.smtp import main

        raise SystemExit(main(["--port", str(port), "--max-seconds", str(max_seconds)]))
