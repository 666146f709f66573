"""Admin for the queue, the log, the don't-send list and jobs.

No action here sends mail inside the request: "retry now" only makes
messages due, and the cron worker sends them.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from mailer.jobs import cancel_jobs, job_progress, retry_failed
from mailer.models import (
    PENDING_STATUSES,
    DontSendEntry,
    Message,
    MessageJob,
    MessageLog,
    MessageStatus,
)


class DueFilter(admin.SimpleListFilter):
    title = _("due")
    parameter_name = "due"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin):
        return [("now", _("due now")), ("later", _("due later"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        now = timezone.now()
        if self.value() == "now":
            return queryset.pending().filter(due_at__lte=now)
        if self.value() == "later":
            return queryset.pending().filter(due_at__gt=now)
        return queryset


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "to_address",
        "subject_or_job",
        "priority",
        "status",
        "due_at",
        "attempts",
    ]
    list_filter = ["priority", "status", DueFilter]
    search_fields = ["to_address", "subject", "message_id"]
    raw_id_fields = ["job"]
    readonly_fields = [
        "job",
        "to_address",
        "envelope_from",
        "envelope_to",
        "subject",
        "message_id",
        "provider_id",
        "claim_token",
        "attempts",
        "created_at",
        "context",
    ]
    actions = ["retry_now", "delete_selected"]
    list_select_related = ["job"]
    show_full_result_count = False

    @admin.display(description=_("subject"))
    def subject_or_job(self, message: Message) -> str:
        return message.subject or (message.job.subject if message.job else "")

    @admin.action(description=_("Retry now (the next send_mail run sends them)"))
    def retry_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        from mailer.dbclock import DbNow

        now = DbNow()  # the workers' clock (see mailer.dbclock)
        # Claimed messages (a worker holds them right now) are left alone.
        # Held "in doubt" messages may have been delivered: the staff member
        # releasing them accepts one more copy each.
        retriable = [
            *PENDING_STATUSES,
            MessageStatus.FAILED,
            MessageStatus.IN_DOUBT_HELD,
        ]
        count = (
            queryset.filter(status__in=retriable)
            .exclude(claim_token__isnull=False, due_at__gt=now)
            .update(status=MessageStatus.QUEUED, due_at=now, attempts=0)
        )
        self.message_user(
            request,
            ngettext(
                "%(count)d message queued again.",
                "%(count)d messages queued again.",
                count,
            )
            % {"count": count},
            messages.SUCCESS,
        )


@admin.register(MessageLog)
class MessageLogAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "recipient",
        "subject",
        "result",
        "smtp_code",
        "reply",
    ]
    list_filter = ["result", "smtp_code"]
    search_fields = ["recipient", "subject", "message_id"]
    date_hierarchy = "created_at"
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        # The log is the record of what was sent; ``purge_mail_log`` trims it
        # by age, the admin does not edit history one row at a time.
        return False


@admin.register(DontSendEntry)
class DontSendEntryAdmin(admin.ModelAdmin):
    list_display = ["address", "reason", "created_at"]
    list_filter = ["reason"]
    search_fields = ["address"]


@admin.register(MessageJob)
class MessageJobAdmin(admin.ModelAdmin):
    list_display = [
        "subject",
        "status",
        "progress",
        "recipient_count",
        "created_by",
        "created_at",
        "announced",
    ]
    list_filter = ["status", "priority", "content_type"]
    search_fields = ["subject"]
    readonly_fields = [
        "status",
        "progress",
        "recipient_count",
        "expanded_count",
        "skipped_count",
        "created_by",
        "created_at",
        "finished_at",
        "announced",
    ]
    exclude = ["recipients", "content_type", "object_id"]
    actions = ["cancel", "retry_failed_messages"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Jobs are made by the "Send email update" action, with rendered content.
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return (
            super()
            .get_queryset(request)
            .defer("recipients")
            .select_related("created_by", "content_type")
        )

    @admin.display(description=_("announces"))
    def announced(self, job: MessageJob) -> str:
        target = job.announced_object
        return str(target) if target is not None else "-"

    @admin.display(description=_("progress"))
    def progress(self, job: MessageJob) -> str:
        counts = job_progress(job)
        total = max(job.recipient_count, 1)
        done = counts["sent"] + counts["failed"] + counts["suppressed"]
        percent = min(100, round(100 * done / total))
        return format_html(
            '<progress value="{}" max="100" title="{}%"></progress> '
            "{} expanded · {} sent · {} deferred · {} failed · {} suppressed",
            percent,
            percent,
            job.expanded_count,
            counts["sent"],
            counts["deferred"],
            counts["failed"],
            counts["suppressed"],
        )

    @admin.action(description=_("Cancel (pending messages leave the queue)"))
    def cancel(self, request: HttpRequest, queryset: QuerySet) -> None:
        jobs, cancelled = cancel_jobs(queryset)
        self.message_user(
            request,
            _("%(jobs)d job(s) cancelled; %(messages)d pending message(s) removed.")
            % {"jobs": jobs, "messages": cancelled},
            messages.SUCCESS,
        )

    @admin.action(description=_("Retry failed messages"))
    def retry_failed_messages(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = retry_failed(queryset)
        self.message_user(
            request,
            _("%(count)d failed message(s) queued again.") % {"count": count},
            messages.SUCCESS,
        )
