"""Print the queue: by priority and status, the oldest due message, the jobs."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from mailer.status import queue_status


class Command(BaseCommand):
    help = "Show the mail queue by priority and status, and per-job progress."

    def handle(self, **options: Any) -> None:
        self.stdout.write(queue_status().render())
