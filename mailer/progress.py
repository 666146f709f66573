"""Progress reporting to django-chroniker, when a command runs under it.

chroniker (the maintained Python 3 fork of django-chronograph) runs management
commands in-process and keeps the running job in a thread-local;
``Job.update_progress`` updates it, and does nothing when the command was run
by hand or from crontab. Without chroniker installed this is a no-op.
"""

from __future__ import annotations

import logging

from django.apps import apps

logger = logging.getLogger("mailer.progress")


def report_progress(done: int, total: int | None = None) -> None:
    """Tell chroniker that ``done`` of ``total`` parts are complete."""
    if not apps.is_installed("chroniker"):
        return
    from chroniker.models import Job

    try:
        Job.update_progress(total or max(done, 1), done)
    except Exception:  # noqa: BLE001 - progress must never stop the mail
        logger.warning("could not report progress to chroniker", exc_info=True)
