"""The whole flow, end to end: seed a newsroom, click "Send email update" as
the editor would (through the real admin), then run the cron commands against
an SMTP server on 127.0.0.1 and check every reader got exactly one email."""

from __future__ import annotations

import time
from datetime import date, timedelta
from typing import Any

import django
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.test import Client, override_settings

from mailer.models import Message, MessageJob, MessageStatus
from newsroom.models import Article, Issue, Profile, Subscriber

HEADLINES = [
    ("Council approves night buses to campus", "Four new routes from January"),
    ("Library to open around the clock in exam term", "A trial for eight weeks"),
    ("Rowing club wins the Head of the River", "First victory in twelve years"),
    ("Students design a flood barrier for the town", "Engineering finalists honoured"),
    ("Review: the autumn play is a triumph", "Five stars for the drama society"),
]


class Command(BaseCommand):
    help = "Seed the newsroom and send an email update to every subscriber."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--subscribers", type=int, default=5000)
        parser.add_argument(
            "--smtp",
            metavar="HOST:PORT",
            help="Send to a server already running there instead of starting one.",
        )
        parser.add_argument(
            "--no-send",
            action="store_true",
            help="Only seed subscribers, an issue and the editor account.",
        )

    def handle(
        self, *, subscribers: int, smtp: str | None, no_send: bool, **options: Any
    ) -> None:
        if subscribers < 1:
            raise CommandError("--subscribers must be at least 1")
        call_command("migrate", verbosity=0)
        timings: dict[str, float] = {}
        started = time.monotonic()
        readers = self.seed_subscribers(subscribers)
        issue = self.seed_issue()
        editor = self.seed_editor()
        timings["seed"] = time.monotonic() - started
        self.stdout.write(
            f"Newsroom: {readers} readers get the email edition; "
            f"new issue #{issue.pk} '{issue}'; admin login editor / editor"
        )
        if no_send:
            return
        if smtp:
            host, _, port = smtp.rpartition(":")
            self.run(issue, editor, host or "127.0.0.1", int(port), None, timings)
            return
        from mailer.testing.smtp import SMTPTestServer

        with SMTPTestServer(keep_data=False) as server:
            self.stdout.write(f"SMTP server listening on 127.0.0.1:{server.port}")
            self.run(issue, editor, "127.0.0.1", server.port, server, timings)

    # -- seeding --------------------------------------------------------------

    def seed_subscribers(self, count: int) -> int:
        existing = Subscriber.objects.filter(email__startswith="reader").count()
        Subscriber.objects.bulk_create(
            [
                Subscriber(email=f"reader{i:06d}@bugle.example", name=f"Reader {i}")
                for i in range(existing, count)
            ],
            batch_size=2000,
        )
        # Exactly ``count`` demo readers get this run's email.
        demo = Subscriber.objects.filter(email__startswith="reader")
        demo.filter(email__lt=f"reader{count:06d}@").update(active=True)
        demo.filter(email__gte=f"reader{count:06d}@").update(active=False)
        return count

    def seed_issue(self) -> Issue:
        latest = Issue.objects.order_by("-date").first()
        day = latest.date + timedelta(days=1) if latest else date.today()
        issue = Issue.objects.create(date=day)
        for position, (heading, standfirst) in enumerate(HEADLINES):
            Article.objects.create(
                issue=issue,
                position=position,
                heading=heading,
                standfirst=standfirst,
                body=f"{standfirst}. The full story, as reported by our staff.",
            )
        return issue

    def seed_editor(self):
        user_model = get_user_model()
        editor = user_model.objects.filter(username="editor").first()
        if editor is None:
            editor = user_model.objects.create_superuser(
                "editor", "editor@bugle.example", "editor", first_name="Ed"
            )
        Profile.objects.get_or_create(user=editor)
        return editor

    # -- the flow -------------------------------------------------------------

    def run(self, issue, editor, host: str, port: int, server, timings) -> None:
        before = set(MessageJob.objects.values_list("pk", flat=True))
        client = Client()
        client.force_login(editor)
        started = time.monotonic()
        response = client.post(
            "/admin/newsroom/issue/",
            {
                "action": "send_email_update",
                "_selected_action": [issue.pk],
                "post": "yes",
            },
        )
        timings["admin click"] = time.monotonic() - started
        if response.status_code != 302:
            raise CommandError(f"The admin action answered {response.status_code}")
        (job,) = MessageJob.objects.exclude(pk__in=before)
        self.stdout.write(
            f"Editor clicked 'Send email update': job #{job.pk} queued for "
            f"{job.recipient_count} recipients in {timings['admin click']:.2f}s"
        )

        started = time.monotonic()
        call_command("process_mail_jobs", stdout=self.stdout)
        timings["process_mail_jobs"] = time.monotonic() - started

        with override_settings(**self.smtp_settings(host, port)):
            started = time.monotonic()
            call_command("send_mail", stdout=self.stdout)
            timings["send_mail"] = time.monotonic() - started

        sent = Message.objects.filter(job=job, status=MessageStatus.SENT).count()
        failed = (
            Message.objects.filter(job=job).exclude(status=MessageStatus.SENT).count()
        )
        self.stdout.write(
            "Timings: "
            + ", ".join(f"{name} {secs:.2f}s" for name, secs in timings.items())
        )
        if server is None:
            self.stdout.write(f"{sent} sent, {failed} not sent (see your SMTP server)")
            ok = sent == job.recipient_count
        else:
            counts = server.counts
            received = sum(counts.values())
            duplicates = sum(n - 1 for n in counts.values() if n > 1)
            expected = {r if isinstance(r, str) else r[0] for r in job.recipients}
            missing = len({e.lower() for e in expected} - set(counts))
            self.stdout.write(
                f"SMTP server received {received} emails for {len(counts)} distinct "
                f"recipients: {duplicates} duplicates, {missing} missing, "
                f"{failed} not sent"
            )
            ok = received == len(counts) == job.recipient_count and not missing
        if not ok:
            raise CommandError("Not every subscriber got exactly one email")
        self.stdout.write(
            self.style.SUCCESS(
                f"Every one of {job.recipient_count} subscribers got exactly one email."
            )
        )

    @staticmethod
    def smtp_settings(host: str, port: int) -> dict[str, Any]:
        if django.VERSION >= (6, 1):
            mailers = {alias: dict(conf) for alias, conf in settings.MAILERS.items()}
            options = dict(mailers["smtp"].get("OPTIONS", {}), host=host, port=port)
            mailers["smtp"]["OPTIONS"] = options
            return {"MAILERS": mailers}
        return {"EMAIL_HOST": host, "EMAIL_PORT": port}
