"""The whole flow, end to end: seed a newsroom, click "Send email update" as
the editor would (through the real admin: confirmation page, then "Yes, I'm
sure"), run the cron commands against an SMTP server on 127.0.0.1, and check
that every reader got exactly one email. Exits non-zero if not.

Each run announces a new issue (the next day's), so running it again sends
again without tripping the resend guard, which is there to stop an editor
sending the same issue twice.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client, override_settings
from django.utils import timezone
from django.utils.html import strip_tags

from mailer.models import DontSendEntry, Message, MessageJob, MessageStatus
from mailer.testing.mailconfig import repointed
from newsroom.models import Article, Issue, Profile, Subscriber

HEADLINES = [
    ("Council approves night buses to campus", "Four new routes from January"),
    ("Library to open around the clock in exam term", "A trial for eight weeks"),
    ("Rowing club wins the Head of the River", "First victory in twelve years"),
    ("Students design a flood barrier for the town", "Engineering finalists honoured"),
    ("Review: the autumn play is a triumph", "Five stars for the drama society"),
]
FIRST_NAMES = ["Amara", "Ben", "Chloé", "Dev", "Eilidh", "Femi", "Grace", "Hiro"]
SURNAMES = ["O'Brien", "Nowak", "Okafor", "Patel", "Schmidt", "Svensson", "Zhang"]
DOMAIN = "bugle.example"
MAX_READERS = 900_000  # reader000000@ ... reader899999@ sort as numbers


def reader_address(index: int) -> str:
    return f"reader{index:06d}@{DOMAIN}"


def reader_name(index: int) -> str:
    first = FIRST_NAMES[index % len(FIRST_NAMES)]
    return f"{first} {SURNAMES[index // len(FIRST_NAMES) % len(SURNAMES)]}"


def _has_aiosmtpd() -> bool:
    """Whether aiosmtpd (the ``[testing]`` extra) can be imported."""
    try:
        import aiosmtpd  # noqa: F401
    except ImportError:
        return False
    return True


class Command(BaseCommand):
    help = (
        "Seed the newsroom with N readers and a new issue, send the issue to "
        "them through the admin action and the cron commands, and check that "
        "each got exactly one email."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--subscribers",
            type=int,
            default=5000,
            metavar="N",
            help="Readers to send to (default 5000).",
        )
        parser.add_argument(
            "--smtp",
            metavar="HOST:PORT",
            help="Send to an SMTP server already running there (e.g. "
            "manage.py smtp_sink) instead of starting one.",
        )
        parser.add_argument(
            "--no-send",
            action="store_true",
            help="Only seed: readers, a new issue and the editor account.",
        )

    def handle(
        self, *, subscribers: int, smtp: str | None, no_send: bool, **options: Any
    ) -> None:
        if not 1 <= subscribers <= MAX_READERS:
            raise CommandError(f"--subscribers must be between 1 and {MAX_READERS}")
        target = None
        if smtp:
            host, _, port = smtp.rpartition(":")
            if not port.isdigit():
                raise CommandError("--smtp must look like HOST:PORT")
            target = (host or "127.0.0.1", int(port))
        if not no_send and not target and not _has_aiosmtpd():
            # Said before anything is seeded, not as a traceback after.
            raise CommandError(
                "demo starts a local SMTP server, which needs aiosmtpd: "
                'pip install "django-mailer-jobs[testing]" (or pass --smtp '
                "HOST:PORT for a server already running, or --no-send)"
            )
        self.timings: dict[str, float] = {}

        started = time.monotonic()
        self.migrate_if_needed()
        readers = self.seed_readers(subscribers)
        issue = self.seed_issue()
        editor = self.seed_editor()
        self.timings["seed"] = time.monotonic() - started
        self.stdout.write(
            f"Newsroom: {len(readers):,} readers get the email edition; new issue "
            f"#{issue.pk} “{issue}”; admin login: editor / editor"
        )
        if no_send:
            return
        if target:
            self.stdout.write(f"Sending to the SMTP server at {target[0]}:{target[1]}")
            self.send(issue, editor, readers, target, server=None)
            return
        from mailer.testing.smtp import SMTPTestServer

        # Counts only: 100,000 stored messages would fill memory for nothing.
        with SMTPTestServer("127.0.0.1", 0, keep_data=False) as server:
            self.stdout.write(f"SMTP test server listening on 127.0.0.1:{server.port}")
            self.send(issue, editor, readers, (server.host, server.port), server)

    # -- seeding --------------------------------------------------------------

    def migrate_if_needed(self) -> None:
        executor = MigrationExecutor(connection)
        if executor.migration_plan(executor.loader.graph.leaf_nodes()):
            self.stdout.write("Applying migrations...")
            call_command("migrate", verbosity=0)

    def seed_readers(self, count: int) -> list[str]:
        """Make exactly ``count`` demo readers active; return their addresses.

        Idempotent: existing readers are reused, missing ones bulk-created.
        A demo reader who unsubscribed (say, by trying a link from an earlier
        run) stays unsubscribed, and the next address takes their place.
        """
        suppressed = set(
            DontSendEntry.objects.filter(
                address__startswith="reader", address__endswith=f"@{DOMAIN}"
            ).values_list("address", flat=True)
        )
        wanted: list[str] = []
        index = 0
        while len(wanted) < count and index < MAX_READERS:
            address = reader_address(index)
            if address not in suppressed:
                wanted.append(address)
            index += 1
        if len(wanted) < count:
            raise CommandError("Too many demo readers unsubscribed")
        demo = Subscriber.objects.filter(
            email__startswith="reader", email__endswith=f"@{DOMAIN}"
        )
        existing = set(demo.values_list("email", flat=True))
        Subscriber.objects.bulk_create(
            [
                Subscriber(email=address, name=reader_name(i))
                for i, address in enumerate(wanted)
                if address not in existing
            ],
            batch_size=2000,
        )
        # Range updates rather than "email IN (100,000 addresses)".
        boundary = reader_address(index)
        demo.filter(email__lt=boundary).exclude(email__in=suppressed).update(
            active=True
        )
        demo.filter(email__gte=boundary).update(active=False)
        demo.filter(email__in=suppressed).update(active=False)
        return wanted

    def seed_issue(self) -> Issue:
        latest = Issue.objects.order_by("-date").first()
        day = latest.date + timedelta(days=1) if latest else timezone.localdate()
        issue = Issue.objects.create(date=day)
        Article.objects.bulk_create(
            Article(
                issue=issue,
                position=position,
                heading=heading,
                standfirst=standfirst,
                body=f"{standfirst}. The full story, as reported by our staff.",
            )
            for position, (heading, standfirst) in enumerate(HEADLINES)
        )
        return issue

    def seed_editor(self):
        user_model = get_user_model()
        editor = user_model.objects.filter(username="editor").first()
        if editor is None:
            editor = user_model.objects.create_superuser(
                "editor",
                "editor@bugle.example",
                "editor",
                first_name="Ed",
                last_name="Itor",
            )
        # The editor reads the paper in the office, not by email.
        Profile.objects.get_or_create(user=editor)
        return editor

    # -- the flow -------------------------------------------------------------

    def send(
        self,
        issue: Issue,
        editor,
        readers: list[str],
        target: tuple[str, int],
        server,
    ) -> None:
        job = self.click_send_email_update(issue, editor)
        # Cron runs with DEBUG off, as in production: DEBUG's query log would
        # triple the expansion time on PostgreSQL and say nothing about the app.
        with override_settings(DEBUG=False, **repointed(settings, *target)):
            started = time.monotonic()
            call_command("process_mail_jobs", stdout=self.stdout)
            self.timings["process_mail_jobs"] = time.monotonic() - started
            started = time.monotonic()
            try:
                call_command("send_mail", stdout=self.stdout)
            except CommandError as error:
                # e.g. the server is down: still show what did (not) happen.
                self.stderr.write(f"send_mail: {error}")
            self.timings["send_mail"] = time.monotonic() - started
        self.report(job, readers, server)

    def click_send_email_update(self, issue: Issue, editor) -> MessageJob:
        """What the editor's browser does: the action, then "Yes, I'm sure"."""
        client = Client()
        client.force_login(editor)
        changelist = "/admin/newsroom/issue/"
        chosen = {"action": "send_email_update", "_selected_action": [issue.pk]}

        started = time.monotonic()
        page = client.post(changelist, chosen)
        self.timings["confirmation page"] = time.monotonic() - started
        if page.status_code != 200 or b"mailer-send-email-update" not in page.content:
            raise CommandError(
                f"The admin action did not show its confirmation page "
                f"(HTTP {page.status_code})"
            )

        before = MessageJob.objects.order_by("-pk").values_list("pk", flat=True)
        last_job = before.first() or 0
        started = time.monotonic()
        done = client.post(changelist, {**chosen, "post": "yes"}, follow=True)
        self.timings["confirm (queue job)"] = time.monotonic() - started
        # The messages as the editor reads them (the success message links
        # to the job's report).
        notes = [strip_tags(str(m)) for m in get_messages(done.wsgi_request)]
        jobs = list(MessageJob.objects.filter(pk__gt=last_job))
        if len(jobs) != 1:
            raise CommandError(f"Expected one new job, the admin said: {notes}")
        self.stdout.write(f"Admin: {' '.join(notes)} (job #{jobs[0].pk})")
        return jobs[0]

    def report(self, job: MessageJob, readers: list[str], server) -> None:
        job.refresh_from_db()
        rows = Message.all_objects.filter(job=job).values_list("to_address", "status")
        statuses: Counter[str] = Counter()
        sent_to: set[str] = set()
        for address, status in rows:
            statuses[MessageStatus(status).label] += 1
            if status == MessageStatus.SENT:
                sent_to.add(address.lower())
        not_sent = {k: v for k, v in statuses.items() if k != MessageStatus.SENT.label}
        failures = ", ".join(f"{n:,} {k}" for k, n in not_sent.items()) or "0"
        # Readers the engine did not mark sent, or that were never queued.
        unsent = sum(1 for a in readers if a not in sent_to)
        lines = [
            ("Recipients queued", f"{job.recipient_count:,}"),
            ("Skipped at expansion", f"{job.skipped_count:,}"),
            ("Marked sent", f"{statuses[MessageStatus.SENT.label]:,}"),
            ("Not sent", failures),
        ]
        ok = not not_sent and not unsent
        if server is not None:
            counts = {a.lower(): n for a, n in server.counts.items()}
            duplicates = sum(n - 1 for n in counts.values() if n > 1)
            missing = sum(1 for a in readers if counts.get(a, 0) == 0)
            lines += [
                ("Emails received", f"{server.count:,}"),
                ("Distinct recipients", f"{len(counts):,}"),
                ("Duplicates", f"{duplicates:,}"),
            ]
            unsent = max(unsent, missing)
            ok = ok and not duplicates and not missing
        lines.append(("Readers without email", f"{unsent:,}"))
        seconds = self.timings["send_mail"]
        lines.append(
            (
                "Send rate",
                f"{statuses[MessageStatus.SENT.label] / seconds:,.0f} emails/s"
                if seconds
                else "-",
            )
        )
        width = max(len(name) for name, _ in lines) + 1
        self.stdout.write("")
        for name, value in lines:
            self.stdout.write(f"{name + ':':<{width}} {value}")
        self.stdout.write(
            "Seconds per phase: "
            + ", ".join(f"{name} {secs:.2f}" for name, secs in self.timings.items())
        )
        if not ok:
            raise CommandError(
                f"Not every one of the {len(readers):,} readers got exactly one email"
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"Every one of the {len(readers):,} readers got exactly one email."
            )
        )
