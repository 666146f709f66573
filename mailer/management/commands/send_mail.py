"""Send queued mail: ``manage.py send_mail`` from cron, every minute."""

from __future__ import annotations

import signal
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from mailer.conf import conf
from mailer.jobs.progress import SendProgress
from mailer.retention import purge_sent_bodies
from mailer.sending.engine import SendResult, send_queued
from mailer.waiting import wait_until
from mailer.worker.health import record_run
from mailer.worker.wakeup import open_waiter, wait_for_work


class Command(BaseCommand):
    help = (
        "Send queued email by priority over one or more connections, within the "
        "limits. "
        "Exits non-zero when the mail server cannot be reached."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--max-messages",
            type=int,
            help="Send at most this many (MAILER_EMAIL_MAX_BATCH).",
        )
        parser.add_argument(
            "--max-seconds", type=float, help="Stop claiming new mail after this long."
        )
        parser.add_argument(
            "--throttle",
            type=float,
            help="At most this many messages per second (MAILER_RATE).",
        )
        parser.add_argument("--batch-size", type=int, help="Messages claimed at once.")
        parser.add_argument(
            "--connections",
            type=int,
            help="SMTP connections to drive at once (MAILER_CONNECTIONS).",
        )
        parser.add_argument(
            "--loop",
            action="store_true",
            help="Run as a long-lived worker; sleep when idle; stop on SIGTERM.",
        )
        parser.add_argument(
            "--idle-seconds",
            type=float,
            help="With --loop: sleep this long when the queue is empty.",
        )
        parser.add_argument(
            "-c",
            "--cron",
            type=int,
            default=0,
            help="django-mailer's option: 1 prints nothing unless something "
            "was sent, deferred or failed (errors always show).",
        )

    def handle(
        self,
        *,
        max_messages: int | None,
        max_seconds: float | None,
        throttle: float | None,
        batch_size: int | None,
        connections: int | None,
        loop: bool,
        idle_seconds: float | None,
        cron: int = 0,
        **options: Any,
    ) -> None:
        for name, value in (
            ("--max-messages", max_messages),
            ("--max-seconds", max_seconds),
            ("--throttle", throttle),
            ("--batch-size", batch_size),
        ):
            if value is not None and value <= 0:
                raise CommandError(f"{name} must be positive, not {value}")
        if connections is not None:
            from mailer.sending.pool import validate_connections

            try:
                validate_connections(connections)
            except ValueError as error:
                raise CommandError(f"--connections: {error}") from None
        if conf.MAILER_PAUSE_SEND and not loop:
            # django-mailer's MAILER_PAUSE_SEND: mail stays queued.
            if not cron:
                self.stdout.write("sending is paused (MAILER_PAUSE_SEND); nothing sent")
            return
        stop_requested = False

        def request_stop(signum: int, frame: Any) -> None:
            # Finish the message in flight, give the rest of the batch back.
            nonlocal stop_requested
            stop_requested = True

        previous = signal.signal(signal.SIGTERM, request_stop)
        # --loop: LISTEN (PostgreSQL) before the first run, or poll for due
        # mail (jobs are process_mail_jobs' work), so new mail ends the idle
        # sleep at once.
        waiter = open_waiter(jobs=False) if loop else None
        try:
            while True:
                if conf.MAILER_PAUSE_SEND:
                    # A --loop worker waits out MAILER_PAUSE_SEND instead of
                    # exiting (its supervisor would only restart it).
                    result = SendResult(stop_reason="paused")
                else:
                    result = send_queued(
                        max_messages=max_messages,
                        max_seconds=max_seconds,
                        throttle=throttle,
                        batch_size=batch_size,
                        connections=connections,
                        should_stop=lambda: stop_requested,
                        on_progress=SendProgress(max_messages),
                    )
                    record_run(result)  # for mailer_status (mailer/worker/health.py)
                busy = result.attempted or result.suppressed or result.error
                self._tidy_up(result, show=bool(busy or not (loop or cron)))
                if result.error and not loop:
                    raise CommandError(result.error, returncode=2)
                if not loop or stop_requested:
                    break
                if (
                    result.stop_reason in ("queue empty", "paused")
                    or result.error
                    or result.wait_seconds
                ):
                    idle = idle_seconds or conf.MAILER_LOOP_IDLE_SECONDS
                    if result.wait_seconds:
                        # A relay pause or a full rate window: sleep until it
                        # ends; new mail would only find it so.
                        idle = max(idle, min(result.wait_seconds, 86400))
                    elif waiter is not None and not result.error:
                        # Woken early by new mail (mailer/worker/wakeup.py).
                        wait_for_work(waiter, idle, lambda: stop_requested)
                        continue
                    wait_until(
                        idle, should_stop=lambda: stop_requested, slice_seconds=0.2
                    )
        finally:
            signal.signal(signal.SIGTERM, previous)
            if waiter is not None:
                waiter.close()

    def _tidy_up(self, result: SendResult, *, show: bool) -> None:
        """The bookkeeping after a run, and its summary when ``show``.

        A run that stopped because the database went away (a restart, a
        failover: ``stop_reason`` "database error") has said so in its
        one-line summary, and cron needs that line and exit status 2, not a
        traceback from the tidying up. So the database is not asked then;
        and if it goes away during the tidying, the rest waits for the next
        run, which does the same steps."""
        from mailer.jobs.services import finish_jobs, jobs_waiting

        waiting = scheduled = 0
        if result.stop_reason != "database error":
            try:
                if show:
                    # A job whose last message this run resolved is done
                    # now, not at the next process_mail_jobs; and "queue
                    # empty" must not hide a confirmed job still waiting to
                    # be expanded.
                    finish_jobs()
                    waiting, scheduled = jobs_waiting()
                # Sent single mail may carry live links (password resets);
                # its body goes once MAILER_SENT_BODY_RETENTION_SECONDS is
                # over: at the end of this run for a retention of 0, else on
                # a later run (or by purge_mail_bodies). One UPDATE over a
                # small index.
                purge_sent_bodies()
            except DatabaseError:
                pass
        if show:
            self.stdout.write(result.summary())
            if waiting or scheduled:
                self.stdout.write(
                    f"Jobs waiting to be expanded (process_mail_jobs): {waiting}; "
                    f"scheduled for later: {scheduled}"
                )
