"""Admin for the queue, the log, the don't-send list and jobs.

No action here sends mail inside the request: "retry now" only makes
messages due, and the cron worker sends them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, JsonResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator, capfirst
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from mailer.jobs.actions import list_names
from mailer.jobs.report import (
    OUTCOMES,
    job_report,
    rebuild,
    sample_message,
)
from mailer.jobs.services import (
    cancel_jobs,
    delete_jobs,
    finish_job_if_done,
    job_progress,
    pause_jobs,
    pending_count,
    reschedule_jobs,
    resume_jobs,
    retry_failed,
)
from mailer.models import (
    PENDING_STATUSES,
    DontSendEntry,
    JobStatus,
    LogResult,
    Message,
    MessageJob,
    MessageLog,
    MessageStatus,
)
from mailer.numbers import grouped

__all__ = [
    "DueFilter",
    "AnnouncedFilter",
    "MessageAdmin",
    "MessageLogAdmin",
    "DontSendEntryAdmin",
    "MessageJobAdmin",
    "parse_send_at",
]


class DueFilter(admin.SimpleListFilter):
    """Pending messages due now or later (by this host's clock: a view for
    people, not a claim)."""

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
    """The queue, one row per message: read-only but for a pending
    message's status, priority and due time; "retry now" makes messages due
    (the next ``send_mail`` run sends them: the admin never sends inside a
    request). No add form: mail enters through ``mailer.send_mail`` and jobs.
    Django's ``ModelAdmin``
    (https://docs.djangoproject.com/en/stable/ref/contrib/admin/)."""

    list_display = [
        "id",
        "to_address",
        "subject_or_job",
        "job_report",
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
        "email_as_sent",
    ]
    actions = ["retry_now", "delete_selected"]
    #: Selections up to this size get a History entry per message.
    LOG_AT_MOST = 1000

    @admin.display(description=_("job"))
    def job_report(self, message: Message) -> str:
        return job_link(message.job)

    @admin.display(description=_("email, as built for this reader"))
    def email_as_sent(self, message: Message) -> str:
        """Job mail has no stored body: it is rebuilt by the engine's own
        builder (``mailer.jobs.report.rebuild``), the same bytes but for ``Date``."""
        if message.job_id is None:
            data = bytes(message.mime or b"").decode("utf-8", "replace")
        else:
            data = rebuild(message).raw
        return format_html('<pre class="mailer-text">{}</pre>', data[:20000])

    list_select_related = ["job"]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Mail enters the queue through mailer.send_mail and jobs; an
        # admin form would save an empty message that later fails.
        return False

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None and obj.status not in PENDING_STATUSES:
            # An outcome is a record of what happened, not a setting.
            fields += ["status", "priority", "due_at"]
        return fields

    @admin.display(description=_("subject"))
    def subject_or_job(self, message: Message) -> str:
        subject = message.subject or (message.job.subject if message.job else "")
        return Truncator(subject).chars(70)

    @admin.action(
        permissions=["change"],
        description=_("Retry now (the next send_mail run sends them)"),
    )
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
        chosen = queryset.filter(status__in=retriable).exclude(
            claim_token__isnull=False, due_at__gt=now
        )
        # History per message, as Django's delete_selected writes it, for
        # selections a person can read; a retry of a whole 100,000-message
        # filter writes none (the job's own actions log on the job).
        logged = list(chosen.values_list("pk", flat=True)[: self.LOG_AT_MOST + 1])
        count = chosen.update(status=MessageStatus.QUEUED, due_at=now, attempts=0)
        if logged and len(logged) <= self.LOG_AT_MOST:
            from django.contrib.admin.models import CHANGE, LogEntry

            LogEntry.objects.log_actions(
                user_id=request.user.pk,
                queryset=Message.all_objects.filter(pk__in=logged),
                action_flag=CHANGE,
                change_message="Retried now",
                single_object=False,
            )
        self.message_user(
            request,
            ngettext(
                "%(count)s message queued again.",
                "%(count)s messages queued again.",
                count,
            )
            % {"count": grouped(count)},
            messages.SUCCESS,
        )


#: The progress bar's segments, in order: (status name, label).
BAR_SEGMENTS = [
    ("sent", _("sent")),
    ("failed", _("failed")),
    ("suppressed", _("suppressed")),
    ("cancelled", _("cancelled")),
]


def progress_bar(counts: dict[str, int], total: int) -> str:
    """A job's progress as a bar of proportionate segments (sent, failed,
    suppressed, cancelled: a job that failed does not look finished), then
    "N sent · M failed". ``counts`` is :func:`job_progress`'s
    ``{status name: messages}``, ``total`` the confirmed readers; widths are
    percentages of ``total`` (at least 1% for a count above zero, so one
    failure in 100,000 still shows)."""
    total = max(total, 1)
    segments = []
    for key, label in BAR_SEGMENTS:
        count = counts.get(key, 0)
        if count:
            width = max(1.0, round(100 * count / total, 1))
            segments.append((key, f"{width:g}", f"{grouped(count)} {label}"))
    done = sum(counts.get(key, 0) for key, _label in BAR_SEGMENTS)
    percent = min(100, round(100 * done / total))
    summary = ", ".join(text for _key, _width, text in segments) or _("nothing yet")
    failed = counts.get("failed", 0)
    return format_html(
        '<span class="mailer-bar" role="img" aria-label="{}" title="{}% done: {}">'
        "{}</span> {} sent · "
        '<span class="{}">{} failed</span>',
        summary,
        percent,
        summary,
        format_html_join(
            "",
            '<span class="mailer-bar-{}" style="width: {}%"></span>',
            ((key, width) for key, width, _text in segments),
        ),
        grouped(counts.get("sent", 0)),
        "mailer-failed-count" if failed else "mailer-none-failed",
        grouped(failed),
    )


def job_link(job: MessageJob | None) -> str:
    """The job's subject, linking to its report."""
    if job is None:
        return "-"
    return format_html(
        '<a href="{}">{}</a>',
        reverse("admin:mailer_messagejob_change", args=[job.pk]),
        Truncator(job.subject).chars(60),
    )


@admin.register(MessageLog)
class MessageLogAdmin(admin.ModelAdmin):
    """The log of attempts, read-only: no add, change or delete
    (``purge_mail_log`` trims it by age)."""

    list_display = [
        "created_at",
        "recipient",
        "short_subject",
        "job_report",
        "result",
        "smtp_code",
        "short_reply",
    ]
    list_select_related = ["job"]

    @admin.display(description=_("subject"))
    def short_subject(self, log: MessageLog) -> str:
        subject = log.subject or (log.job.subject if log.job_id else "")
        return Truncator(subject).chars(70)

    @admin.display(description=_("job"))
    def job_report(self, log: MessageLog) -> str:
        return job_link(log.job)

    @admin.display(description=_("reply"))
    def short_reply(self, log: MessageLog) -> str:
        return Truncator(log.reply).chars(80)

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
    """The don't-send list, edited with the model's usual permissions;
    addresses are stored normalized (``DontSendEntry.save``)."""

    list_display = ["address", "reason", "created_at"]
    list_filter = ["reason"]
    search_fields = ["address"]


class AnnouncedFilter(admin.SimpleListFilter):
    """The announced object's model: only models that have jobs."""

    title = _("announces")
    parameter_name = "announces"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin):
        ids = (
            MessageJob.objects.exclude(content_type=None)
            .order_by()
            .values_list("content_type", flat=True)
            .distinct()
        )
        types = ContentType.objects.filter(pk__in=list(ids))
        return [(str(ct.pk), capfirst(ct.name)) for ct in types]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value():
            return queryset.filter(content_type_id=self.value())
        return queryset


@admin.register(MessageJob)
class MessageJobAdmin(admin.ModelAdmin):
    """Jobs are reports, never forms: once confirmed a job's content is what
    its readers get, so no permission can change it (a correction is a new
    job). State changes are actions, each behind a confirmation page, each
    written to the job's history (LogEntry)."""

    list_display = [
        "short_subject",
        "status_display",
        "progress",
        "recipient_total",
        "created_by",
        "created_at",
        "send_at",
        "announced",
    ]
    list_filter = ["status", "priority", AnnouncedFilter]
    search_fields = ["subject"]
    actions = [
        "pause",
        "resume",
        "cancel",
        "reschedule",
        "retry_failed_messages",
        "delete_selected",
    ]
    show_full_result_count = False
    report_template = "admin/mailer/messagejob/report.html"
    action_confirmation_template = "admin/mailer/messagejob/action_confirmation.html"

    class Media:
        css = {"all": ["mailer/admin.css"]}

    # -- permissions ----------------------------------------------------------

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Jobs are made by the "Send email update" action, with rendered content.
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        # The content is what readers get: read-only for everyone.
        return False

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        # An editor who may send (add_messagejob) watches the reports too.
        return super().has_view_permission(request, obj) or request.user.has_perm(
            "mailer.add_messagejob"
        )

    def has_control_permission(self, request: HttpRequest) -> bool:
        """Pause, resume, cancel, reschedule, retry: staff who may change
        jobs (any job) and editors who may send (their own jobs)."""
        return request.user.has_perm(
            "mailer.change_messagejob"
        ) or request.user.has_perm("mailer.add_messagejob")

    def controllable(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if request.user.has_perm("mailer.change_messagejob"):
            return queryset
        return queryset.filter(created_by=request.user)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return (
            super()
            .get_queryset(request)
            .defer("recipients")
            .select_related("created_by", "content_type")
        )

    # -- list columns ---------------------------------------------------------

    @admin.display(description=_("subject"), ordering="subject")
    def short_subject(self, job: MessageJob) -> str:
        return Truncator(job.subject).chars(70)

    @admin.display(description=_("status"), ordering="status")
    def status_display(self, job: MessageJob) -> str:
        return job.display_status

    @admin.display(description=_("announces"))
    def announced(self, job: MessageJob) -> str:
        target = job.announced_object
        return Truncator(str(target)).chars(50) if target is not None else "-"

    # Not named "recipients": the model's field of that name (the snapshot)
    # would win and be loaded for every row.
    @admin.display(description=_("recipients"), ordering="recipient_count")
    def recipient_total(self, job: MessageJob) -> str:
        return grouped(job.recipient_count)

    @admin.display(description=_("progress"))
    def progress(self, job: MessageJob) -> str:
        return progress_bar(job_progress(job), job.recipient_count)

    # -- the report -----------------------------------------------------------

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<path:object_id>/progress.json",
                self.admin_site.admin_view(self.progress_view),
                name="{}_{}_progress".format(*info),
            ),
            *super().get_urls(),
        ]

    def progress_view(self, request: HttpRequest, object_id: str) -> JsonResponse:
        """Counts by outcome, polled by the report page (static report.js)."""
        job = self.get_object(request, unquote(object_id))
        if job is None or not self.has_view_permission(request, job):
            raise PermissionDenied
        finish_job_if_done(job)
        return JsonResponse(job_report(job).as_json())

    def change_view(self, request, object_id, form_url="", extra_context=None):
        job = self.get_object(request, unquote(object_id))
        if job is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_view_permission(request, job):
            raise PermissionDenied
        if request.method == "POST":
            raise PermissionDenied  # a report, not a form
        finish_job_if_done(job)
        report = job_report(job)
        sample = sample_message(job)
        preview = rebuild(sample) if sample.to_address else None
        reader = None
        query = request.GET.get("reader", "").strip()
        if query:
            reader = self._reader(job, query)
        failures = (
            MessageLog.objects.filter(job=job, result=LogResult.FAILED)
            .order_by("-created_at")
            .values("recipient", "smtp_code", "reply", "created_at")[:50]
        )
        context = {
            **self.admin_site.each_context(request),
            "title": job.subject,
            "subtitle": None,
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "original": job,
            "job": job,
            "report": report,
            "outcomes": [(key, label, report.counts[key]) for key, label in OUTCOMES],
            "sample": sample,
            "preview": preview,
            "failures": list(failures),
            "query": query,
            "reader": reader,
            "progress_url": reverse(
                "admin:mailer_messagejob_progress",
                args=[job.pk],
                current_app=self.admin_site.name,
            ),
            "media": self.media,
            "has_view_permission": True,
            "job_actions": self._job_actions(request, job, report),
            "list_names": list_names(job) if job.list_id else [],
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            **(extra_context or {}),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.report_template, context)

    def _job_actions(self, request: HttpRequest, job: MessageJob, report) -> list:
        """(action name, label) the report offers as buttons; each leads to
        the action's confirmation page, as from the job list."""
        if not self.has_control_permission(request):
            return []
        # exists(): evaluating the queryset would load the job's recipient
        # snapshot (100,000 readers: a second of JSON decoding).
        if not self.controllable(
            request, MessageJob.objects.filter(pk=job.pk)
        ).exists():
            return []
        status = job.status
        offered = []
        if status in (JobStatus.PENDING, JobStatus.EXPANDING, JobStatus.QUEUED):
            offered.append(("pause", _("Pause")))
        if status == JobStatus.PAUSED:
            offered.append(("resume", _("Resume")))
        if job.is_scheduled:
            offered.append(("reschedule", _("Reschedule")))
        if report.counts["failed"] and status != JobStatus.CANCELLED:
            offered.append(("retry_failed_messages", _("Retry failed")))
        if status not in (JobStatus.DONE, JobStatus.CANCELLED):
            offered.append(("cancel", _("Cancel")))
        return offered

    def _reader(self, job: MessageJob, query: str) -> dict:
        # No ordering: first() would add ORDER BY id, and SQLite then walks
        # the primary key instead of the (job, to_address) index.
        found = Message.all_objects.filter(job=job, to_address=query).order_by()[:1]
        message = next(iter(found), None)
        if message is None:
            found = Message.all_objects.filter(
                job=job, to_address__iexact=query
            ).order_by()[:1]
            message = next(iter(found), None)
        if message is None:
            skipped = MessageLog.objects.filter(
                job=job, recipient__iexact=query, result=LogResult.SKIPPED
            ).first()
            return {"address": query, "message": None, "skipped": skipped}
        attempts = MessageLog.objects.filter(job=job, message_pk=message.pk).order_by(
            "created_at", "id"
        )
        return {
            "address": query,
            "message": message,
            "attempts": list(attempts),
            "email": rebuild(message),
        }

    # -- deleting -------------------------------------------------------------

    def get_deleted_objects(self, objs, request: HttpRequest):
        """Lists the jobs and counts their messages: a 100,000-message job
        would otherwise put 100,000 lines on the confirmation page."""
        jobs = list(objs)
        perms_needed = set()
        if not self.has_delete_permission(request):
            perms_needed.add(self.opts.verbose_name)
        count = Message.all_objects.filter(job__in=[j.pk for j in jobs]).count()
        model_count = {
            self.opts.verbose_name_plural: len(jobs),
            Message._meta.verbose_name_plural: count,
        }
        return [str(job) for job in jobs], model_count, perms_needed, []

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        # A handful of statements (mailer.jobs.services.delete_jobs): Django's
        # collector would load every message of a 100,000-reader job.
        delete_jobs(queryset)

    def delete_model(self, request: HttpRequest, obj: MessageJob) -> None:
        delete_jobs(MessageJob.objects.filter(pk=obj.pk))

    # -- actions --------------------------------------------------------------

    def _confirm(
        self,
        request: HttpRequest,
        queryset: QuerySet,
        *,
        action: str,
        title: str,
        message: str,
        irreversible: bool = False,
        extra: dict | None = None,
    ) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "subtitle": None,
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "queryset": queryset,
            "message": message,
            "irreversible": irreversible,
            "action_name": action,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media,
            **(extra or {}),
        }
        request.current_app = self.admin_site.name
        opts = self.opts
        return TemplateResponse(
            request,
            [
                f"admin/{opts.app_label}/{opts.model_name}/{action}_confirmation.html",
                self.action_confirmation_template,
            ],
            context,
        )

    def _run(
        self, request: HttpRequest, queryset: QuerySet, action: JobAction
    ) -> TemplateResponse | None:
        """Every job action's shape, as Django's ``delete_selected``: the
        jobs this editor may control that ``action`` applies to; a
        confirmation page until it is posted with ``post=yes`` (again, with
        the error, when its form does not parse); then the change, a History
        entry (LogEntry) per job and one message for the editor."""
        queryset = action.select(self.controllable(request, queryset))
        error = None
        if request.POST.get("post") == "yes":
            try:
                value = action.form(request.POST) if action.form else None
            except ValueError as problem:
                error = str(problem)
            else:
                jobs = list(queryset)
                result = action.apply(queryset, value)
                history = action.history(value)
                for job in jobs:
                    self.log_change(request, job, history)
                self.message_user(request, action.done(result), messages.SUCCESS)
                return None
        extra = (
            {"schedule": True, "error": error, "time_zone": settings.TIME_ZONE}
            if action.form
            else None
        )
        return self._confirm(
            request,
            queryset,
            action=action.name,
            title=action.title,
            message=action.warning(queryset),
            irreversible=action.irreversible,
            extra=extra,
        )

    @admin.action(permissions=["control"], description=_("Pause selected jobs"))
    def pause(self, request: HttpRequest, queryset: QuerySet):
        return self._run(request, queryset, PAUSE)

    @admin.action(permissions=["control"], description=_("Resume selected jobs"))
    def resume(self, request: HttpRequest, queryset: QuerySet):
        return self._run(request, queryset, RESUME)

    @admin.action(permissions=["control"], description=_("Cancel selected jobs"))
    def cancel(self, request: HttpRequest, queryset: QuerySet):
        return self._run(request, queryset, CANCEL)

    @admin.action(permissions=["control"], description=_("Reschedule selected jobs"))
    def reschedule(self, request: HttpRequest, queryset: QuerySet):
        return self._run(request, queryset, RESCHEDULE)

    @admin.action(permissions=["control"], description=_("Retry failed messages"))
    def retry_failed_messages(self, request: HttpRequest, queryset: QuerySet):
        return self._run(request, queryset, RETRY_FAILED)


def parse_send_at(data) -> datetime | None:
    """ "send now" or "send at" from a form: ``when`` is ``now`` or ``at``,
    ``send_at`` a ``datetime-local`` value read in the site's ``TIME_ZONE``.
    Raises ``ValueError`` with a message for the editor."""
    if data.get("when", "now") != "at":
        return None
    value = data.get("send_at", "").strip()
    try:
        naive = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(_("Enter a date and time to send at.")) from None
    if not settings.USE_TZ:
        aware = naive.replace(tzinfo=None)
    elif naive.tzinfo is None:
        aware = timezone.make_aware(naive, timezone.get_default_timezone())
    else:
        aware = naive
    if aware <= timezone.now():
        raise ValueError(_("The time to send at is in the past."))
    return aware


def _local(value: datetime) -> datetime:
    """``value`` in the current time zone; a naive one (``USE_TZ = False``)
    is local time already."""
    return timezone.localtime(value) if timezone.is_aware(value) else value


# -- the job actions, as a table ----------------------------------------------------


@dataclass(frozen=True)
class JobAction:
    """One job action (:meth:`MessageJobAdmin._run` runs them all).

    ``name`` is the admin action's name (the ``MessageJobAdmin`` method
    that runs it): the confirmation form posts it back as ``action``, so any
    other name makes "Yes, I'm sure" run no action. It also picks the
    confirmation template
    ``admin/<app>/<model>/<name>_confirmation.html`` (a site overrides one
    action's page there), falling back to
    ``MessageJobAdmin.action_confirmation_template``. ``select`` narrows the
    editor's jobs to those the action applies to; ``warning`` is what the
    confirmation page says about them; ``form`` (optional) parses the page's
    form, raising ``ValueError`` with a message for the editor; ``apply``
    changes the jobs (``queryset``, the parsed form value) and returns what
    ``done`` words for the editor (with ``ngettext``); ``history`` is the
    LogEntry text (in English, like Django's own change messages)."""

    name: str
    title: str
    select: Callable[[QuerySet], QuerySet]
    warning: Callable[[QuerySet], str]
    apply: Callable[[QuerySet, Any], Any]
    done: Callable[[Any], str]
    history: Callable[[Any], str]
    irreversible: bool = False
    form: Callable[[Any], Any] | None = None


def _counted(singular: str, plural: str) -> Callable[[int], str]:
    """``done`` for an action whose result is a count of jobs or messages."""
    return lambda count: ngettext(singular, plural, count) % {"count": grouped(count)}


PAUSE = JobAction(
    name="pause",
    title=_("Pause jobs"),
    select=lambda jobs: jobs.filter(
        status__in=[JobStatus.PENDING, JobStatus.EXPANDING, JobStatus.QUEUED]
    ),
    warning=lambda jobs: _(
        "No more emails of these jobs go out until they are resumed. "
        "Emails a worker is sending right now still go."
    ),
    apply=lambda jobs, _value: pause_jobs(jobs),
    done=_counted("%(count)s job paused.", "%(count)s jobs paused."),
    history=lambda _value: "Paused",
)

RESUME = JobAction(
    name="resume",
    title=_("Resume jobs"),
    select=lambda jobs: jobs.filter(status=JobStatus.PAUSED),
    warning=lambda jobs: _("Their pending emails are due again at once."),
    apply=lambda jobs, _value: resume_jobs(jobs),
    done=_counted("%(count)s job resumed.", "%(count)s jobs resumed."),
    history=lambda _value: "Resumed",
)


def _cancel_warning(jobs: QuerySet) -> str:
    pending = pending_count(jobs)
    return ngettext(
        "%(count)s pending email will not be sent.",
        "%(count)s pending emails will not be sent.",
        pending,
    ) % {"count": grouped(pending)}


def _cancelled(result: tuple[int, int]) -> str:
    count, removed = result
    return ngettext(
        "%(count)s job cancelled; %(removed)s pending messages removed.",
        "%(count)s jobs cancelled; %(removed)s pending messages removed.",
        count,
    ) % {"count": grouped(count), "removed": grouped(removed)}


CANCEL = JobAction(
    name="cancel",
    title=_("Cancel jobs"),
    select=lambda jobs: jobs.exclude(status__in=[JobStatus.DONE, JobStatus.CANCELLED]),
    warning=_cancel_warning,
    apply=lambda jobs, _value: cancel_jobs(jobs),
    done=_cancelled,
    history=lambda _value: "Cancelled",
    irreversible=True,
)


def _rescheduled_to(send_at: datetime | None) -> str:
    when = date_format(_local(send_at), "DATETIME_FORMAT") if send_at else _("now")
    return f"Rescheduled to {when}"


RESCHEDULE = JobAction(
    name="reschedule",
    title=_("Reschedule jobs"),
    select=lambda jobs: jobs.filter(status=JobStatus.PENDING, expanded_count=0),
    warning=lambda jobs: _("Jobs that have not started go out at the time you choose."),
    form=parse_send_at,
    apply=reschedule_jobs,
    done=_counted("%(count)s job rescheduled.", "%(count)s jobs rescheduled."),
    history=_rescheduled_to,
)


def _retry_warning(jobs: QuerySet) -> str:
    failed = Message.all_objects.filter(
        job__in=jobs, status=MessageStatus.FAILED
    ).count()
    return ngettext(
        "%(count)s failed email will be tried again.",
        "%(count)s failed emails will be tried again.",
        failed,
    ) % {"count": grouped(failed)}


RETRY_FAILED = JobAction(
    name="retry_failed_messages",
    title=_("Retry failed messages"),
    select=lambda jobs: jobs,
    warning=_retry_warning,
    apply=lambda jobs, _value: retry_failed(jobs),
    done=_counted(
        "%(count)s failed message queued again.",
        "%(count)s failed messages queued again.",
    ),
    history=lambda _value: "Retried failed messages",
)
