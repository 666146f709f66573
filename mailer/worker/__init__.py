"""Workers that wake within a second instead of once a minute.

- ``wakeup.py``: how queuing mail wakes a worker (PostgreSQL ``NOTIFY`` in
  the queuing transaction, a short indexed poll elsewhere, a task on commit)
  and how an idle worker waits for it;
- ``loop.py``: the long-lived worker behind ``runmailer`` and ``runmailer_pg``
  (expand waiting jobs, send, wait, again);
- ``tasks.py``: the same two steps as tasks of Django's tasks framework
  (``django.tasks`` on Django 6.0+, the ``django-tasks`` backport on 5.2);
- ``health.py``: the last run's outcome, shared across hosts, for
  ``mailer_status --json`` and its exit code.

Nothing here sends mail itself: every path ends in
``mailer.sending.engine.send_queued`` and
``mailer.jobs.expand.expand_pending_jobs``, whose claims and leases keep each
email sent exactly once however many workers wake for it.
"""

__all__: list[str] = []  # import from the modules
