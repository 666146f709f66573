"""Read bounces and complaints: ``manage.py process_bounces``.

``process_bounces --imap`` (MAILER_BOUNCE_IMAP), ``process_bounces --maildir
PATH`` (or MAILER_BOUNCE_MAILDIR), or ``process_bounces -`` with one mail on
standard input, for an MTA pipe alias (``bounces: "|manage.py process_bounces -"``).
"""

from __future__ import annotations

import sys
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from mailer.bounces import parse, readers
from mailer.bounces.process import ProcessResult, process_bytes
from mailer.conf import conf


class Command(BaseCommand):
    help = (
        "Record bounces (RFC 3464) and complaints (RFC 5965) from IMAP, a Maildir "
        "or standard input ('-'); suppress hard bounces, repeated soft bounces "
        "and complainers. Unreadable mail is left in place and listed."
    )

    #: A binary stream in place of standard input (``call_command(...,
    #: stdin=...)``, as ``createsuperuser`` takes one).
    stealth_options = ("stdin",)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "source", nargs="?", help="'-' to read one mail from standard input."
        )
        parser.add_argument(
            "--imap", action="store_true", help="Read MAILER_BOUNCE_IMAP."
        )
        parser.add_argument("--maildir", nargs="?", const="", help="Read this Maildir.")

    def handle(
        self,
        *args: Any,
        source: str | None = None,
        imap: bool = False,
        maildir: str | None = None,
        **options: Any,
    ) -> None:
        try:
            parse.require()
        except ImproperlyConfigured as error:
            # Before any mail is read: a pipe's mail is kept by the MTA
            # (75, EX_TEMPFAIL) and tried again once the extra is installed.
            raise CommandError(
                str(error), returncode=75 if source == "-" else 1
            ) from error
        result = ProcessResult()

        def handle(data: bytes, name: str) -> bool:
            return process_bytes(data, result, name=name)

        if source == "-":
            readers.read_stdin(options.get("stdin") or sys.stdin.buffer, handle)
        elif source is not None:
            raise CommandError(
                f"Unknown source {source!r}; use '-', --imap or --maildir."
            )
        elif imap:
            config = conf.MAILER_BOUNCE_IMAP
            missing = {"host", "user", "password"} - set(config)
            if missing:
                raise CommandError(
                    f"MAILER_BOUNCE_IMAP lacks {', '.join(sorted(missing))}."
                )
            try:
                readers.read_imap(handle, **config)
            except (OSError, readers.imaplib.IMAP4.error) as error:
                raise CommandError(f"IMAP {config['host']}: {error}") from error
        elif maildir is not None:
            path = maildir or conf.MAILER_BOUNCE_MAILDIR
            if not path:
                raise CommandError("Name a Maildir or set MAILER_BOUNCE_MAILDIR.")
            try:
                readers.read_maildir(path, handle)
            except FileNotFoundError as error:
                raise CommandError(f"No Maildir at {path}.") from error
        else:
            raise CommandError("Give '-', --imap or --maildir.")
        self.stdout.write(result.summary())
        for name in result.unreadable:
            self.stderr.write(f"Unreadable, left in place: {name}")
        if source == "-" and result.unreadable:
            # An MTA pipe: a non-zero exit makes the MTA keep (or return)
            # the mail instead of dropping it.
            raise CommandError("Unreadable bounce mail.", returncode=75)
