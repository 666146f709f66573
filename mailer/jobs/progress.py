"""Progress reporting to django-chroniker, when a command runs under it.

chroniker (the maintained Python 3 fork of django-chronograph) runs management
commands in-process and keeps the running job in a thread-local;
``Job.update_progress`` updates it, and does nothing when the command was run
by hand or from crontab. Without chroniker installed this is a no-op.
"""

from __future__ import annotations

import logging

from django.apps import apps

__all__ = ["SendProgress", "report_progress"]

logger = logging.getLogger("mailer.progress")


def reporting() -> bool:
    """Whether progress reports can go anywhere (chroniker is installed)."""
    return apps.is_installed("chroniker")


def report_progress(done: int, total: int | None = None) -> None:
    """Tell chroniker that ``done`` of ``total`` parts are complete."""
    if not reporting():
        return
    from chroniker.models import Job

    try:
        Job.update_progress(total or max(done, 1), done)
    except Exception:  # noqa: BLE001 - progress must never stop the mail
        logger.warning("could not report progress to chroniker", exc_info=True)


class SendProgress:
    """``send_queued``'s ``on_progress`` for ``manage.py send_mail``: messages
    done of the messages this run will take.

    The total is learnt once, after the first batch (an empty queue costs no
    extra query): what this run has done plus what is still due, within the
    run's ``--max-messages``. Mail queued during the run can push ``done``
    past it; the total then grows with it.
    """

    def __init__(self, max_messages: int | None = None) -> None:
        self.max_messages = max_messages
        self.total: int | None = None

    def __call__(self, result) -> None:
        if not reporting():
            return
        done = result.attempted + result.suppressed
        if self.total is None:
            from mailer.models import Message

            self.total = done + Message.all_objects.due().count()
            if self.max_messages is not None:
                self.total = min(self.total, self.max_messages)
        report_progress(done, max(self.total, done))
