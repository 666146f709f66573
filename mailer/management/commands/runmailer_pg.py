"""``manage.py runmailer_pg``: django-mailer 2.3's PostgreSQL worker. Waits
on ``LISTEN`` and wakes within a second of the commit that queues mail; an
error on any other database."""

from __future__ import annotations

from mailer.management.commands.runmailer import Command as RunMailer


class Command(RunMailer):
    help = (
        "Run the mail worker on PostgreSQL LISTEN/NOTIFY: woken by the commit "
        "that queues mail, no polling. Stops cleanly on SIGTERM."
    )
    listen = True
