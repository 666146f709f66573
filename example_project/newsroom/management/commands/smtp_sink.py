"""A local SMTP server that prints each email as it arrives, for trying the
newsroom by hand: run it, click "Send email update" in the admin, then run
``process_mail_jobs`` and ``send_mail`` (settings send to 127.0.0.1:1025).

The server is aiosmtpd's own command line; this command only picks the port
from the settings and a handler that prints one line per email. Without
Django, the same sink is::

    python -m aiosmtpd -n -u -l 127.0.0.1:1025 -c aiosmtpd.handlers.Debugging

(``Debugging`` prints every email in full, 15 KB each for the newsroom's).
"""

from __future__ import annotations

import email.policy
from email.parser import BytesHeaderParser
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser


class OneLinePerEmail:
    """aiosmtpd handler: accept every email and print ``from -> to: Subject``."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        headers = BytesHeaderParser(policy=email.policy.default).parsebytes(
            envelope.original_content or b""
        )
        recipients = ", ".join(envelope.rcpt_tos)
        subject = headers.get("Subject", "")
        print(f"{envelope.mail_from} -> {recipients}: {subject}", flush=True)
        return "250 OK"


class Command(BaseCommand):
    help = (
        "Run an SMTP server on 127.0.0.1 that accepts all mail and prints one line "
        "per email (Ctrl-C stops it)."
    )
    # A mail server needs neither the database nor the URLconf.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--port",
            type=int,
            default=settings.SMTP_PORT,
            help="Default: the port send_mail sends to (SMTP_PORT, 1025).",
        )
        parser.add_argument(
            "--quiet", action="store_true", help="Accept mail, print nothing."
        )

    def handle(self, *, port: int, quiet: bool, **options: Any) -> None:
        try:
            from aiosmtpd.main import main
        except ImportError as error:
            raise CommandError(
                'smtp_sink needs aiosmtpd: pip install "django-mailer-jobs[testing]"'
            ) from error

        handler = "aiosmtpd.handlers.Sink" if quiet else f"{__name__}.OneLinePerEmail"
        self.stdout.write(f"SMTP sink on 127.0.0.1:{port} (Ctrl-C stops it)")
        self.stdout.flush()
        # -n: stay this user (aiosmtpd otherwise switches to "nobody");
        # -u: offer SMTPUTF8, as a real relay does, for non-ASCII addresses.
        main(["-n", "-u", "-l", f"127.0.0.1:{port}", "-c", handler])
