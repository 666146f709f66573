"""``manage.py import_subscribers --list SLUG (--csv FILE | --from-model
app.Model --email-field F [--name-field F] [--filter FIELD=VALUE])``: bring
an existing subscriber table (or a CSV file) into a list, all or nothing."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...importing import ImportFailed, import_csv, import_rows
from ...models import MailingList, Source


class Command(BaseCommand):
    help = "Import subscribers into a list from a CSV file or an existing model."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--list", required=True, dest="slug")
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--csv", help="CSV with columns email, name, source")
        source.add_argument("--from-model", help="app_label.Model")
        parser.add_argument("--email-field", default="email")
        parser.add_argument("--name-field", default="")
        parser.add_argument(
            "--filter",
            action="append",
            default=[],
            help="FIELD=VALUE (repeatable), e.g. active=1",
        )

    def handle(
        self,
        *,
        slug: str,
        csv: str | None,
        from_model: str | None,
        email_field: str,
        name_field: str,
        filter: list[str],
        **options: Any,
    ) -> None:
        try:
            mailing_list = MailingList.objects.get(slug=slug)
        except MailingList.DoesNotExist:
            raise CommandError(f"No list with the slug {slug!r}") from None
        try:
            if csv:
                with open(csv, encoding="utf-8-sig", newline="") as lines:
                    result = import_csv(mailing_list, lines)
            else:
                result = import_rows(
                    mailing_list,
                    self.model_rows(from_model, email_field, name_field, filter),
                )
        except ImportFailed as failure:
            raise CommandError(f"Nothing imported: {failure}") from None
        self.stdout.write(f"{mailing_list.slug}: {result.summary()}")

    def model_rows(
        self, label: str, email_field: str, name_field: str, filters: list[str]
    ):
        try:
            model = apps.get_model(label)
        except (LookupError, ValueError):
            raise CommandError(f"No model {label!r} (use app_label.Model)") from None
        lookups = {}
        for item in filters:
            field, sep, value = item.partition("=")
            if not sep:
                raise CommandError(f"--filter {item!r}: use FIELD=VALUE")
            lookups[field] = value
        fields = [email_field] + ([name_field] if name_field else [])
        try:
            rows = model._default_manager.filter(**lookups).order_by("pk")
            values = rows.values_list("pk", *fields)
            for pk, email, *name in values.iterator(chunk_size=5000):
                yield (
                    pk,
                    str(email or ""),
                    str(name[0] or "") if name else "",
                    Source.IMPORT,
                )
        except Exception as error:  # FieldError, ValidationError: bad options
            raise CommandError(f"Cannot read {label}: {error}") from None
