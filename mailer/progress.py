"""Progress reporting to django-chroniker, when a command runs under it.

chroniker runs a management command in-process and exposes the running
``Job``; reporting is best-effort and never breaks sending.
"""

from __future__ import annotations

import os
from typing import Any


def current_chroniker_job() -> Any | None:
    """The chroniker ``Job`` running this process, if any."""
    try:
        from chroniker.models import Job
    except (ImportError, RuntimeError):
        return None
    job_id = os.environ.get("CHRONIKER_JOB_ID")
    try:
        if job_id:
            return Job.objects.filter(pk=job_id).first()
        return Job.objects.filter(is_running=True, current_pid=str(os.getpid())).first()
    except Exception:  # noqa: BLE001 - progress must never stop the mail
        return None


def report_progress(done: int, total: int | None = None) -> None:
    job = current_chroniker_job()
    if job is None:
        return
    try:
        job.update_progress(done, total or max(done, 1))
    except Exception:  # noqa: BLE001
        pass
