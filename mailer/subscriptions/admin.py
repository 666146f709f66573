"""Admin: lists with their counts, subscriptions with filters, search, CSV
import and export, and one person's data exported or erased."""

from __future__ import annotations

import io
import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.html import format_html, format_html_join

from . import services
from .importing import ImportFailed, export_csv, import_csv
from .models import ConsentWording, ErasedAddress, MailingList, Status, Subscription

__all__ = ["MailingListAdmin", "SubscriptionAdmin"]


def list_growth(mailing_list: MailingList, months: int = 12) -> list[tuple]:
    """``(month, joined, left)`` for the last ``months`` months with any
    change, oldest first; months are in the current time zone."""
    from datetime import timedelta

    from django.db.models.functions import TruncMonth
    from django.utils import timezone

    since = timezone.now() - timedelta(days=31 * months)
    subs = Subscription.objects.filter(mailing_list=mailing_list)
    joined = dict(
        subs.filter(confirmed_at__gte=since)
        .annotate(month=TruncMonth("confirmed_at"))
        .values_list("month")
        .annotate(n=Count("id"))
        .values_list("month", "n")
    )
    left = dict(
        subs.filter(unsubscribed_at__gte=since)
        .annotate(month=TruncMonth("unsubscribed_at"))
        .values_list("month")
        .annotate(n=Count("id"))
        .values_list("month", "n")
    )
    return [
        (month, joined.get(month, 0), left.get(month, 0))
        for month in sorted(set(joined) | set(left))
    ]


@admin.register(MailingList)
class MailingListAdmin(admin.ModelAdmin):
    """Lists with their active and pending counts and a growth chart."""

    list_display = ["name", "slug", "public", "double_opt_in", "active", "pending"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["growth"]

    @admin.display(description="Growth (last 12 months)")
    def growth(self, obj: MailingList) -> str:
        """Per month: subscriptions confirmed and subscriptions ended."""
        if obj.pk is None:
            return "-"
        rows = list_growth(obj)
        if not rows:
            return "No subscribers yet."
        return format_html(
            "<table><thead><tr><th>Month</th><th>Joined</th><th>Left</th></tr>"
            "</thead><tbody>{}</tbody></table>",
            format_html_join(
                "",
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                ((f"{month:%Y-%m}", joined, left) for month, joined, left in rows),
            ),
        )

    def get_queryset(self, request: HttpRequest):
        return (
            super()
            .get_queryset(request)
            .annotate(
                active_count=Count(
                    "subscriptions", filter=Q(subscriptions__status=Status.ACTIVE)
                ),
                pending_count=Count(
                    "subscriptions", filter=Q(subscriptions__status=Status.PENDING)
                ),
            )
        )

    @admin.display(ordering="active_count")
    def active(self, obj: MailingList) -> int:
        return obj.active_count

    @admin.display(ordering="pending_count")
    def pending(self, obj: MailingList) -> int:
        return obj.pending_count


class ImportForm(forms.Form):
    mailing_list = forms.ModelChoiceField(MailingList.objects.all(), label="List")
    file = forms.FileField(
        label="CSV file", help_text="Columns: email, name (optional), source (optional)"
    )


class PersonForm(forms.Form):
    email = forms.CharField(label="Email address")


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    """Subscriptions with their record of consent, CSV export (an action),
    CSV import (needs the add permission) and one person's data exported or
    erased (needs the delete permission)."""

    list_display = [
        "address",
        "name",
        "mailing_list",
        "status",
        "consent_source",
        "consent_at",
    ]
    list_filter = ["mailing_list", "status", "consent_source", "unsubscribed_how"]
    search_fields = ["address", "name"]
    date_hierarchy = "consent_at"
    actions = ["export_selected"]
    change_list_template = "admin/mailer_subscriptions/subscription/change_list.html"

    def get_urls(self):
        return [
            path(
                "import/",
                self.admin_site.admin_view(self.import_view),
                name="mailer_subscriptions_import",
            ),
            path(
                "person/",
                self.admin_site.admin_view(self.person_view),
                name="mailer_subscriptions_person",
            ),
            *super().get_urls(),
        ]

    @admin.action(description="Export selected subscriptions as CSV")
    def export_selected(self, request: HttpRequest, queryset) -> HttpResponse:
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="subscriptions.csv"'
        export_csv(queryset, response)
        return response

    def import_view(self, request: HttpRequest) -> HttpResponse:
        """Upload a UTF-8 CSV into one list (``importing.import_csv``); every
        invalid row is listed and nothing is written."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ImportForm(request.POST or None, request.FILES or None)
        errors = []
        if request.method == "POST" and form.is_valid():
            text = io.TextIOWrapper(
                form.cleaned_data["file"].file, encoding="utf-8-sig"
            )
            try:
                result = import_csv(form.cleaned_data["mailing_list"], text)
            except ImportFailed as failure:
                errors = failure.errors
            except UnicodeDecodeError:
                errors = [(0, "the file is not UTF-8 text")]
            else:
                self.message_user(
                    request, f"Imported: {result.summary()}", messages.SUCCESS
                )
                return redirect("admin:mailer_subscriptions_subscription_changelist")
        return TemplateResponse(
            request,
            "admin/mailer_subscriptions/import.html",
            {
                **self.admin_site.each_context(request),
                "form": form,
                "errors": errors,
                "title": "Import subscribers",
                "opts": self.model._meta,
            },
        )

    def person_view(self, request: HttpRequest) -> HttpResponse:
        """An access request (download everything stored) or an erasure."""
        if not self.has_delete_permission(request):
            raise PermissionDenied
        form = PersonForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            address = form.cleaned_data["email"]
            if "erase" in request.POST:
                count = services.erase(address)
                self.message_user(
                    request, f"Erased {count} subscription(s); a hashed entry is kept."
                )
                return redirect("admin:mailer_subscriptions_subscription_changelist")
            response = HttpResponse(
                json.dumps(services.export_person(address), indent=2),
                content_type="application/json",
            )
            response["Content-Disposition"] = 'attachment; filename="person.json"'
            return response
        return TemplateResponse(
            request,
            "admin/mailer_subscriptions/person.html",
            {
                **self.admin_site.each_context(request),
                "form": form,
                "title": "Export or erase one person's data",
                "opts": self.model._meta,
            },
        )


admin.site.register(ConsentWording)
admin.site.register(ErasedAddress)
