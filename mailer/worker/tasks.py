"""The queue's two steps as tasks of Django's tasks framework.

``django.tasks`` on Django 6.0+, the ``django-tasks`` backport on 5.2
(``pip install django-mailer-jobs[tasks]``). Configure a backend in
``TASKS`` and set ``MAILER_USE_TASKS = True``: queuing mail then enqueues
:data:`send_mail_task`, confirming a job :data:`expand_jobs_task`, when the
transaction commits. The recommended backend is django-tasks-db
(``django_tasks_db.DatabaseBackend``, run by ``manage.py db_worker``: the
same database, no broker); Celery and RQ run them through their
django-tasks backends.

A task only says "work is waiting". It carries no email: the mail stays in
the queue, claimed under a lease by whoever runs first, so a task that runs
twice sends nothing twice and a task that dies (or a backend that loses it)
loses nothing: the next task, ``runmailer`` or a cron ``send_mail`` sends it.

At most one task of each kind waits at a time: :func:`request` marks it in
``WorkerState`` (``task:send``, ``task:expand``) with a short lease
(``MAILER_TASK_LEASE_SECONDS``), and the task clears the mark as it starts,
before it looks at the queue, so mail queued while it runs gets a task of
its own and mail queued before is found by this one.

This module defines tasks at import; import it only when the tasks framework
is installed (``announce`` does so only with ``MAILER_USE_TASKS``).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, connections, transaction
from django.db.models import Min, Q
from django.utils import timezone

from mailer.conf import conf
from mailer.worker.wakeup import EXPAND, SEND

try:  # Django 6.0+
    from django.tasks import task
except ImportError:  # Django 5.2: the backport
    try:
        from django_tasks import task
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError(
            "MAILER_USE_TASKS needs Django 6.0+ or the django-tasks backport: "
            "pip install 'django-mailer-jobs[tasks]'"
        ) from error

__all__ = ["expand_jobs_task", "request_on_commit", "send_mail_task", "task_backend"]

logger = logging.getLogger("mailer.worker")

#: The ``WorkerState`` key of a retry scheduled for deferred mail.
LATER = "send-later"


def _key(kind: str) -> str:
    return f"task:{kind}"


def _mark(kind: str, until: datetime, *, now: datetime) -> bool:
    """Mark a task of ``kind`` as waiting until ``until``; False when one
    already waits (its mark has not run out)."""
    from mailer.models import WorkerState

    key = _key(kind)
    free = Q(until__isnull=True) | Q(until__lt=now)
    if kind == LATER:
        # A later retry replaces a scheduled one only if it is due sooner.
        free |= Q(until__gt=until)
    if WorkerState.objects.filter(free, key=key).update(until=until, updated_at=now):
        return True
    try:
        with transaction.atomic():
            WorkerState.objects.create(key=key, until=until, updated_at=now)
    except IntegrityError:
        return False  # it exists and is taken
    return True


def _unmark(kind: str) -> None:
    from mailer.models import WorkerState

    WorkerState.objects.filter(key=_key(kind)).update(until=None)


def _unmark_due_retry() -> None:
    """Clear the mark of a scheduled retry whose time has come (this run is
    it, or does its work)."""
    from mailer.models import WorkerState

    reached = timezone.now() + timedelta(seconds=conf.MAILER_TASK_LEASE_SECONDS)
    WorkerState.objects.filter(key=_key(LATER), until__lte=reached).update(until=None)


def request(kind: str, *, run_after: datetime | None = None) -> bool:
    """Enqueue the task for ``kind`` ("send" or "expand") unless one waits
    already; True if enqueued. Errors of the task backend are logged, not
    raised: the mail is queued and committed whatever happens here."""
    task_object = {SEND: send_mail_task, EXPAND: expand_jobs_task}[kind]
    now = timezone.now()
    mark = LATER if run_after is not None else kind
    until = (run_after or now) + timedelta(seconds=conf.MAILER_TASK_LEASE_SECONDS)
    if not _mark(mark, until, now=now):
        return False
    try:
        options: dict[str, Any] = {"backend": conf.MAILER_TASK_BACKEND}
        if run_after is not None:
            options["run_after"] = run_after
        task_object.using(**options).enqueue()
    except Exception:
        logger.exception("could not enqueue the mail %s task", kind)
        _unmark(mark)
        return False
    return True


class _Request:
    """An on-commit callback; equal per kind, so that one transaction that
    queues a thousand emails registers one."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __call__(self) -> None:
        request(self.kind)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Request) and other.kind == self.kind

    def __hash__(self) -> int:
        return hash(self.kind)


def request_on_commit(kind: str, *, using: str) -> None:
    """Enqueue the task for ``kind`` once the current transaction commits
    (now, in autocommit mode); nothing if it rolls back."""
    callback = _Request(kind)
    connection = connections[using]
    if connection.in_atomic_block and any(
        entry[1] == callback for entry in connection.run_on_commit
    ):
        return
    transaction.on_commit(callback, using=using)


def task_backend() -> Any:
    """The ``TASKS`` backend named by ``MAILER_TASK_BACKEND`` (Django's tasks
    framework, https://docs.djangoproject.com/en/dev/topics/tasks/, or the
    django-tasks backport on Django 5.2).

    :raises InvalidTaskBackendError: no such backend (from
        ``django.tasks.exceptions``, or ``django_tasks.exceptions`` on 5.2).
    """
    try:
        from django.tasks import task_backends
    except ImportError:
        from django_tasks import task_backends
    return task_backends[conf.MAILER_TASK_BACKEND]


def _supports_defer() -> bool:
    return bool(getattr(task_backend(), "supports_defer", False))


def _next_due() -> datetime | None:
    from mailer.models import Message

    return Message.all_objects.filter(due_at__isnull=False).aggregate(m=Min("due_at"))[
        "m"
    ]


@task()
def expand_jobs_task() -> dict[str, Any]:
    """Expand every confirmed job into one message per recipient, then ask
    for a send task. Returns the counts (JSON)."""
    from mailer.jobs.expand import expand_pending_jobs

    _unmark(EXPAND)
    result = expand_pending_jobs()
    if result.queued:
        request(SEND)
    return {"jobs": result.jobs, "queued": result.queued, "skipped": result.skipped}


@task()
def send_mail_task() -> dict[str, Any]:
    """Send due mail until the queue is empty (within the ``MAILER_*``
    limits), record the run for ``mailer_status``, and ask for the next task:
    at once when a limit left mail due, at the next due time (deferred mail,
    a relay that could not be reached) when the backend can defer tasks.
    Returns the counts (JSON)."""
    from mailer.jobs.progress import JobFinisher
    from mailer.sending.engine import send_queued
    from mailer.worker.health import record_run

    _unmark(SEND)
    _unmark_due_retry()
    # JobFinisher: a job is done the moment its last message is recorded.
    result = send_queued(on_progress=JobFinisher())
    record_run(result)
    now = timezone.now()
    next_due = _next_due()
    if result.error:
        # The relay is down: try again after the idle sleep, not at once.
        from mailer.worker.loop import empty_queue_sleep

        retry_at = now + _seconds(empty_queue_sleep())
        next_due = max(next_due, retry_at) if next_due else retry_at
    if next_due is not None:
        if next_due <= now:
            request(SEND)
        elif next_due.year < 9999 and _supports_defer():
            request(SEND, run_after=next_due)
    return {
        "sent": result.sent,
        "deferred": result.deferred,
        "failed": result.failed,
        "suppressed": result.suppressed,
        "stop_reason": result.stop_reason,
        "error": result.error,
    }


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)
