"""The admin click: the confirmation page POST and the "Yes, I'm sure" POST
(which queues the job) for the benchmark issue, through Django's test
``Client`` and the real admin action (seconds per POST)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from benchmarks.figures import median

if TYPE_CHECKING:
    from benchmarks.suite import Suite

KEY = "admin"


def measure(suite: Suite) -> dict[str, Any]:
    from django.contrib.auth.models import User
    from django.test import Client
    from django.urls import reverse

    from benchmarks.benchapp.models import Subscriber
    from benchmarks.workload import subscribers
    from mailer.models import MessageJob

    count = suite.sizes.subscribers
    Subscriber.objects.all().delete()
    Subscriber.objects.bulk_create(
        (Subscriber(**s) for s in subscribers(count)), batch_size=5000
    )
    editor = User.objects.create_superuser(
        "editor", "editor@example.com", "pw", first_name="Eddie", last_name="Tor"
    )
    client = Client()
    client.force_login(editor)
    url = reverse("admin:benchapp_issue_changelist")
    data = {"action": "send_email_update", "_selected_action": [suite.issue.pk]}
    confirm, yes = [], []
    # The first round warms templates and caches and is not counted.
    for round_ in range(suite.sizes.cheap_reps + 1):
        suite.reset_queue()
        t = time.perf_counter()
        response = client.post(url, data)
        confirm_seconds = time.perf_counter() - t
        expected = f'<dd class="mailer-count">{count}</dd>'
        if response.status_code != 200 or expected not in response.content.decode():
            raise AssertionError(
                f"confirmation page: {response.status_code}, no {expected}"
            )
        t = time.perf_counter()
        response = client.post(url, {**data, "post": "yes"})
        yes_seconds = time.perf_counter() - t
        if response.status_code != 302:
            raise AssertionError(f"'Yes, I'm sure' answered {response.status_code}")
        job = MessageJob.objects.defer("recipients").get()
        if job.recipient_count != count:
            raise AssertionError(f"job has {job.recipient_count} recipients")
        if round_:
            confirm.append(confirm_seconds)
            yes.append(yes_seconds)
        suite.log(
            f"admin {count:,}: confirm {confirm_seconds:.2f} s, yes {yes_seconds:.2f} s"
        )
    suite.reset_queue()
    return {
        "subscribers": count,
        "confirm_seconds": median(confirm),
        "yes_seconds": median(yes),
        "confirm_runs": confirm,
        "yes_runs": yes,
    }
