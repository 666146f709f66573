"""The job report at 100,000 readers (issue 15): time to load the admin's
job page, its progress.json, the job list and the delete confirmation.

    python benchmarks/desk_report.py [--readers 100000] [--database-url URL]

Builds a fresh SQLite file (or uses the given database), a job of N readers,
expanded, 90 % sent over 30 minutes (one log row each) and 1 % failed, then
times each page with Django's test client (best of 5, seconds)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--readers", type=int, default=100_000)
    parser.add_argument("--database-url", default="sqlite:////tmp/desk_report.sqlite3")
    args = parser.parse_args()
    if args.database_url.startswith("sqlite:///"):
        Path(args.database_url.removeprefix("sqlite:///")).unlink(missing_ok=True)
    os.environ["DATABASE_URL"] = args.database_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    import django

    django.setup()
    from datetime import timedelta

    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.test import Client
    from django.test.utils import setup_test_environment
    from django.utils import timezone

    from mailer.jobs.expand import expand_pending_jobs
    from mailer.jobs.services import RenderedEmail, create_job
    from mailer.models import LogResult, Message, MessageLog, MessageStatus

    setup_test_environment()
    call_command("migrate", verbosity=0)
    n = args.readers
    job = create_job(
        content=RenderedEmail(
            subject="Issue", body_text="Hi [[mj:name]]", body_html="<p>Hi</p>"
        ),
        recipients=[{"email": f"r{i}@example.com", "name": f"R {i}"} for i in range(n)],
    )
    expand_pending_jobs(chunk_size=5000)
    ids = list(Message.all_objects.filter(job=job).values_list("id", "to_address"))
    sent, failed = ids[: n * 9 // 10], ids[n * 9 // 10 : n * 91 // 100]
    start = timezone.now() - timedelta(minutes=30)
    Message.all_objects.filter(pk__in=[pk for pk, _a in sent]).update(
        status=MessageStatus.SENT, due_at=None
    ) if len(sent) < 30000 else Message.all_objects.filter(
        job=job, id__lte=sent[-1][0]
    ).update(status=MessageStatus.SENT, due_at=None)
    Message.all_objects.filter(
        job=job, id__gt=sent[-1][0], id__lte=failed[-1][0]
    ).update(status=MessageStatus.FAILED, due_at=None)
    logs = [
        MessageLog(
            job=job,
            message_pk=pk,
            recipient=address,
            result=LogResult.SENT,
            smtp_code=250,
            created_at=start + timedelta(seconds=1800 * i / len(sent)),
        )
        for i, (pk, address) in enumerate(sent)
    ] + [
        MessageLog(
            job=job,
            message_pk=pk,
            recipient=address,
            result=LogResult.FAILED,
            smtp_code=550,
            reply="5.1.1 no such user",
        )
        for pk, address in failed
    ]
    MessageLog.objects.bulk_create(logs, batch_size=5000)
    del logs, ids
    User.objects.create_superuser("bench", "b@example.com", "pw")
    client = Client()
    client.force_login(User.objects.get())
    pages = {
        "report": f"/admin/mailer/messagejob/{job.pk}/change/",
        "report + reader search": f"/admin/mailer/messagejob/{job.pk}/change/"
        f"?reader=r{n // 2}@example.com",
        "progress.json": f"/admin/mailer/messagejob/{job.pk}/progress.json",
        "job list": "/admin/mailer/messagejob/",
    }
    print(f"{n:,} readers, {args.database_url.split(':')[0]}:")
    for name, url in pages.items():
        best = min(_time(client.get, url) for _ in range(5))
        print(f"  {name:<24} {best:.3f} s")
    from mailer.jobs.report import job_report, rebuild, sample_message, sent_per_minute

    for name, piece in [
        ("  counts", lambda: job_report(job)),
        ("  chart query", lambda: sent_per_minute(job)),
        ("  sample + rebuild", lambda: rebuild(sample_message(job))),
    ]:
        started = time.perf_counter()
        piece()
        print(f"  {name:<24} {time.perf_counter() - started:.3f} s")
    confirm = {"action": "delete_selected", "_selected_action": [job.pk]}
    jobs_url = "/admin/mailer/messagejob/"
    took = _time(client.post, jobs_url, confirm)
    print(f"  {'delete confirmation':<24} {took:.3f} s")
    took = _time(client.post, jobs_url, {**confirm, "post": "yes"})
    print(f"  {'delete':<24} {took:.3f} s")


def _time(call, *args) -> float:
    started = time.perf_counter()
    response = call(*args)
    assert response.status_code in (200, 302), response.status_code
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
