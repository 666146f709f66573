"""Django's tasks framework: queuing enqueues one task on commit, and the
tasks run in this process expand and send. (A real ``db_worker`` process
(django-tasks-db) delivering single mail and jobs:
tests/system/test_long_running_workers.py.)"""

from __future__ import annotations

import time

import pytest
from django.db import transaction

pytest.importorskip("django_tasks_db")

from mailer.models import Message, MessageStatus, WorkerState  # noqa: E402
from tests.worker.helpers import confirm_job, queue  # noqa: E402

SEND_TASK = "mailer.worker.tasks.send_mail_task"
EXPAND_TASK = "mailer.worker.tasks.expand_jobs_task"


def waiting_tasks() -> list[str]:
    from django_tasks_db.models import DBTaskResult

    return sorted(DBTaskResult.objects.ready().values_list("task_path", flat=True))


# -- enqueuing -----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_queuing_mail_enqueues_one_send_task_however_many_emails(use_tasks):
    with transaction.atomic():
        for i in range(5):
            queue(f"r{i}@example.com")
        assert waiting_tasks() == []  # only on commit
    queue("later@example.com")
    assert waiting_tasks() == [SEND_TASK]


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_transaction_enqueues_nothing(use_tasks):
    with pytest.raises(RuntimeError), transaction.atomic():
        queue()
        confirm_job(2)
        raise RuntimeError("the view failed")
    assert waiting_tasks() == []
    assert not WorkerState.objects.exclude(until=None).exists()


@pytest.mark.django_db(transaction=True)
def test_confirming_a_job_enqueues_the_expand_task(use_tasks):
    confirm_job(3)
    confirm_job(2)
    assert waiting_tasks() == [EXPAND_TASK]


@pytest.mark.django_db(transaction=True)
def test_held_mail_enqueues_nothing(use_tasks):
    queue(priority="deferred")
    assert waiting_tasks() == []


@pytest.mark.django_db(transaction=True)
def test_without_the_setting_nothing_is_enqueued():
    queue()
    assert waiting_tasks() == []


@pytest.mark.django_db(transaction=True)
def test_a_waiting_task_whose_lease_ran_out_is_replaced(use_tasks, settings):
    settings.MAILER_TASK_LEASE_SECONDS = 0
    queue("one@example.com")
    time.sleep(0.01)
    queue("two@example.com")
    assert waiting_tasks() == [SEND_TASK, SEND_TASK]


# -- running the tasks in-process ----------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_tasks_expand_and_send_and_free_their_kind_for_the_next_mail(
    use_tasks, mailserver
):
    from mailer.worker.tasks import expand_jobs_task, send_mail_task

    addresses = confirm_job(3)
    assert expand_jobs_task.call() == {"jobs": 1, "queued": 3, "skipped": 0}
    assert waiting_tasks() == [EXPAND_TASK, SEND_TASK]  # the first still "waits"
    result = send_mail_task.call()
    assert (result["sent"], result["error"]) == (3, None)
    assert sorted(mailserver.counts) == addresses
    # The job is done when its last message is recorded, before any
    # further expansion task runs.
    from mailer.models import JobStatus, MessageJob

    assert MessageJob.objects.get().status == JobStatus.DONE

    queue()  # the send kind is free again: a new task for new mail
    assert waiting_tasks().count(SEND_TASK) == 2


@pytest.mark.django_db(transaction=True)
def test_a_task_run_twice_sends_each_email_once(use_tasks, mailserver):
    from mailer.worker.tasks import send_mail_task

    queue()
    send_mail_task.call()
    send_mail_task.call()
    assert mailserver.count == 1


@pytest.mark.django_db(transaction=True)
def test_deferred_mail_schedules_a_task_for_its_retry(use_tasks, mailserver):
    from django_tasks_db.models import DBTaskResult, get_date_max

    from mailer.worker.tasks import send_mail_task

    queue()
    mailserver.defer(["reader@example.com"])
    send_mail_task.call()

    message = Message.all_objects.get()
    assert message.status == MessageStatus.DEFERRED
    # Enqueued to run at the retry's due time (the first one, "as soon as
    # possible", has django-tasks-db's far-future marker date instead).
    later = DBTaskResult.objects.exclude(run_after=get_date_max()).get()
    assert later.task_path == SEND_TASK
    assert later.run_after == message.due_at


# -- system checks ----------------------------------------------------------------


def test_the_check_accepts_a_backend_with_a_worker(use_tasks):
    from mailer.checks import check_tasks

    assert check_tasks() == []


def test_the_check_warns_when_tasks_would_run_inside_the_request(use_tasks, settings):
    from mailer.checks import check_tasks

    settings.TASKS = {
        "default": {"BACKEND": "django_tasks_db.DatabaseBackend"},
        "inline": {"BACKEND": _backend_path("immediate.ImmediateBackend")},
    }
    settings.MAILER_TASK_BACKEND = "inline"
    [warning] = check_tasks()
    assert warning.id == "mailer.W003"
    assert "run inside the request" in warning.msg


def test_the_check_names_a_task_backend_that_does_not_exist(use_tasks, settings):
    from mailer.checks import check_tasks

    settings.MAILER_TASK_BACKEND = "missing"
    [error] = check_tasks()
    assert error.id == "mailer.E005"
    assert "'missing'" in error.msg


def _backend_path(name: str) -> str:
    import django

    if django.VERSION >= (6, 0):
        return f"django.tasks.backends.{name}"
    return f"django_tasks.backends.{name}"
