"""Put deferred mail back in the queue, due now."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from mailer.engine import retry_deferred


class Command(BaseCommand):
    help = "Make deferred (and held) messages due now. Backoff does this by itself too."

    def handle(self, **options: Any) -> None:
        count = retry_deferred()
        self.stdout.write(f"{count} deferred message(s) queued again")
