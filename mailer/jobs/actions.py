"""The reusable "Send email update" admin action.

Any ModelAdmin gets it in a few lines::

    from mailer.jobs.actions import EmailUpdate, EmailUpdateAdminMixin

    @admin.register(Issue)
    class IssueAdmin(EmailUpdateAdminMixin, admin.ModelAdmin):
        email_update = EmailUpdate(
            subject=lambda issue: f"The Daily, {issue.date:%d %B}",
            text_template="newsroom/email/issue.txt",
            html_template="newsroom/email/issue.html",
            recipients=lambda issue: Subscriber.objects.filter(active=True)
                                                .values("email", "name"),
        )

The editor ticks objects, picks the action and gets a confirmation page (the
admin's own look, like delete confirmation) with, per object, the subject,
sender, number of recipients, a sandboxed HTML preview and the text version,
and a button that sends one test email to the editor. Confirming creates one
``MessageJob`` per object and returns at once: no email is sent, and no
per-recipient row is written, inside the request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db import models, transaction
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.timesince import timesince
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _lazy
from django.utils.translation import ngettext

from mailer.exceptions import InvalidEmail, TemplateProblem
from mailer.jobs.personalize import Personalizer
from mailer.jobs.services import (
    RecipientLike,
    RenderedEmail,
    create_job,
    recent_job_for,
    render_email,
    snapshot_recipients,
)
from mailer.numbers import grouped

__all__ = [
    "EmailUpdate",
    "EmailUpdateAdminMixin",
    "email_update_action",
    "list_names",
    "register_audience",
]

PERMISSION = "mailer.add_messagejob"
ACTION_NAME = "send_email_update"

#: Hook for optional apps (e.g. ``mailer.subscriptions``) that offer the
#: editor other audiences on the confirmation page. An audience has
#: ``template`` (included inside the confirmation form, with ``audience``
#: set to ``context(request)``), ``recipients(request)`` (what the editor
#: chose, or None to keep the update's own recipients), ``job_options(request)``
#: (extra ``create_job`` keyword arguments, e.g. ``list_id``) and
#: ``job_created(job, request)``. Registered with :func:`register_audience`.
AUDIENCES: list[Any] = []


def register_audience(audience: Any) -> None:
    """Offer ``audience`` on every "Send email update" confirmation page
    (idempotent: an app's ``ready()`` may run twice in tests).

    An audience is an object with ``template`` (the part of the page it
    renders) and ``context(request)`` (that template's context),
    ``recipients(request)`` (the recipients chosen on the posted page, or
    ``None`` when it was not chosen: the update's own recipients go),
    ``job_options(request)`` (extra ``create_job`` arguments, e.g.
    ``list_id``) and ``job_created(job, request)`` (called for each job made
    for it). Optionally ``list_names(job)``: the human names of the lists a
    job went to (the report shows them instead of the bare ``List-Id``
    label). ``mailer.subscriptions.audience.ListAudience`` is one.
    """
    if not any(type(a) is type(audience) for a in AUDIENCES):
        AUDIENCES.append(audience)


def list_names(job: Any) -> list[str]:
    """The human names of the lists ``job`` (a ``MessageJob``) went to, from
    the first registered audience that knows them (``list_names(job)``, e.g.
    ``mailer.subscriptions``' lists); empty when none does, and the report
    then shows the job's ``List-Id`` label as it is."""
    for audience in AUDIENCES:
        namer = getattr(audience, "list_names", None)
        names = namer(job) if namer is not None else None
        if names:
            return list(names)
    return []


@dataclass
class EmailUpdate:
    """What an email update about one object looks like and who gets it.

    ``recipients(obj)`` returns addresses, ``(address, context)`` pairs or
    mappings with ``"email"`` and per-recipient values such as ``"name"``; a
    ``values("email", "name")`` queryset works as it is. ``context(obj)`` adds
    template context; ``obj`` is available to templates as ``object``.
    """

    subject: str | Callable[[Any], str]
    recipients: Callable[[Any], Iterable[RecipientLike]]
    text_template: str | None = None
    html_template: str | None = None
    from_email: str | None = None
    priority: str = "medium"
    context: Callable[[Any], Mapping[str, Any]] | None = None
    list_id: str = ""
    description: str = "Send email update"

    def render(self, obj: Any) -> RenderedEmail:
        """The email about ``obj``, rendered once (``render_email``).

        :raises mailer.exceptions.TemplateProblem: a template is missing or
            broken, or misuses a per-recipient value.
        """
        return render_email(
            subject=self.subject,
            text_template=self.text_template,
            html_template=self.html_template,
            context=self.context(obj) if self.context else None,
            obj=obj,
        )


class EmailUpdateAdminMixin:
    """Adds the "Send email update" action, for users who may add jobs.

    The action goes through Django's own action machinery (``permissions``
    on ``@admin.action``), so it works unchanged across Django versions and
    appears wherever the admin lists actions.
    """

    email_update: EmailUpdate | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.email_update is not None and self.actions is not None:
            self.actions = [*self.actions, _action(self.email_update.description)]

    def has_mailer_send_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(PERMISSION)

    def get_list_display(self, request: HttpRequest):
        """The site's columns plus "emailed" (last email update, readers
        reached), for staff who may view jobs or send."""
        columns = list(super().get_list_display(request))  # type: ignore[misc]
        if self.email_update is not None and "emailed" not in columns:
            columns.append("emailed")
        return columns

    @admin.display(description=_lazy("emailed"))
    def emailed(self, obj: models.Model) -> str:
        """The newest job that announced ``obj`` (cancelled ones too: they
        may have reached many), when it was confirmed (the admin's
        localized ``DATETIME_FORMAT``) and its readers: "<date>, 5,000
        readers, queued" (or "scheduled", "paused") while its messages are
        not all made yet, so a job confirmed a moment ago does not read as
        reaching nobody; then "<date>, N readers", the readers reached
        (sent). "-" when no job announced it. Two indexed queries per row."""
        from django.contrib.contenttypes.models import ContentType

        from mailer.models import JobStatus, Message, MessageJob, MessageStatus

        job = (
            MessageJob.objects.filter(
                content_type=ContentType.objects.get_for_model(obj),
                object_id=str(obj.pk),
            )
            .order_by("-created_at")
            .values(
                "pk",
                "created_at",
                "status",
                "send_at",
                "recipient_count",
                "expanded_count",
            )
            .first()
        )
        if job is None:
            return "-"
        when = date_format(_local(job["created_at"]), "DATETIME_FORMAT")
        waiting = job["status"] in (JobStatus.PENDING, JobStatus.EXPANDING) or (
            job["status"] == JobStatus.PAUSED
            and job["expanded_count"] < job["recipient_count"]
        )
        if waiting:
            count = job["recipient_count"]
            if job["status"] == JobStatus.PAUSED:
                state = _("paused")
            elif job["send_at"] is not None and job["send_at"] > timezone.now():
                state = _("scheduled")
            else:
                state = _("queued")
            return ngettext(
                "%(when)s, %(count)s reader, %(state)s",
                "%(when)s, %(count)s readers, %(state)s",
                count,
            ) % {"when": when, "count": grouped(count), "state": state}
        reached = Message.all_objects.filter(
            job_id=job["pk"], status=MessageStatus.SENT
        ).count()
        return ngettext(
            "%(when)s, %(count)s reader", "%(when)s, %(count)s readers", reached
        ) % {"when": when, "count": grouped(reached)}


def _action(description: str) -> Callable:
    @admin.action(permissions=["mailer_send"], description=description)
    def send_email_update(
        modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: models.QuerySet
    ) -> HttpResponse | None:
        return email_update_action(modeladmin, request, queryset)

    return send_email_update


@dataclass
class EarlierJob:
    """An earlier email update about the same object, as the confirmation
    page lists it."""

    job: Any
    reached: int

    @property
    def ago(self) -> str:
        """When it was confirmed, in words ("less than a minute ago")."""
        return _ago(self.job.created_at)


@dataclass
class _Preview:
    obj: models.Model
    content: RenderedEmail
    recipients: list
    preview_html: str
    preview_text: str
    preview_subject: str
    #: The fields of the content's segments ({% ifrecipient %}), in order.
    segments: list[str]
    earlier: list[EarlierJob]
    recent_job: Any

    @property
    def framed_html(self) -> str:
        """``preview_html`` for the confirmation page's sandboxed frame: its
        links open in a new tab, and the editor keeps the page."""
        from mailer.jobs.views import links_open_in_the_page

        return links_open_in_the_page(self.preview_html, "_blank")


def earlier_jobs(obj: models.Model) -> list[EarlierJob]:
    """Every job that announced ``obj``, newest first, with how many readers
    each reached (sent messages; a cancelled job may have reached many).
    Two queries."""
    from django.contrib.contenttypes.models import ContentType
    from django.db.models import Count

    from mailer.models import Message, MessageJob, MessageStatus

    jobs = list(
        MessageJob.objects.defer("recipients", "body_text", "body_html")
        .select_related("created_by")
        .filter(
            content_type=ContentType.objects.get_for_model(obj), object_id=str(obj.pk)
        )
        .order_by("-created_at")
    )
    reached = dict(
        Message.all_objects.filter(
            job__in=[job.pk for job in jobs], status=MessageStatus.SENT
        )
        .order_by()
        .values_list("job")
        .annotate(n=Count("id"))
    )
    return [EarlierJob(job=job, reached=reached.get(job.pk, 0)) for job in jobs]


def _editor_values(request: HttpRequest, unsubscribe_url: str = "") -> dict[str, str]:
    user = request.user
    return {
        "email": user.email or "editor@example.com",
        "name": user.get_full_name() or user.get_username(),
        "unsubscribe_url": unsubscribe_url,
    }


def _prepare(config: EmailUpdate, obj: models.Model, request: HttpRequest) -> _Preview:
    from mailer.unsubscribe.tokens import UnsubscribeLinks

    content = config.render(obj)
    links = UnsubscribeLinks()
    values = _editor_values(
        request, links.url(request.user.email or "editor@example.com", None)
    )
    # The preview is the editor's own message, as the test email is: a
    # segment on a value the editor lacks (a list's preferences_url) is left
    # out, and the page names the segments so the editor knows they exist.
    html = Personalizer(content.body_html, escape=True)
    text = Personalizer(content.body_text)
    subject = Personalizer(content.subject)
    segments = dict.fromkeys((*subject.conditions, *text.conditions, *html.conditions))
    return _Preview(
        obj=obj,
        content=content,
        recipients=snapshot_recipients(config.recipients(obj)),
        preview_html=html.render(values),
        preview_text=text.render(values),
        preview_subject=subject.render(values),
        segments=list(segments),
        earlier=earlier_jobs(obj),
        recent_job=recent_job_for(obj),
    )


def send_test(config: EmailUpdate, preview: _Preview, request: HttpRequest) -> str:
    """One high-priority email to the editor, built as the engine builds a
    reader's (``sending.build``): the same headers (``List-Id``,
    ``List-Unsubscribe`` and its one-click ``-Post``), the editor's name, and
    a working unsubscribe link for the editor's own address. Queued like any
    other mail, never sent inside the request. Returns the address; raises
    ``InvalidEmail`` when the account has no address."""
    from mailer.addresses import envelope_address
    from mailer.jobs.compose import JobTemplate
    from mailer.models import Message, Priority
    from mailer.queue import _wake
    from mailer.sending.build import MessageBuilder

    address = request.user.email
    if not address:
        raise InvalidEmail(_("Your user account has no email address."))
    builder = MessageBuilder()
    list_id = config.list_id or preview.obj._meta.model_name
    headers = {**preview.content.headers, "List-Id": f"<{list_id}.{builder.domain}>"}
    if builder.links.enabled:
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    from django.conf import settings

    template = JobTemplate(
        subject=f"[TEST] {preview.content.subject}",
        from_email=config.from_email or settings.DEFAULT_FROM_EMAIL,
        body_text=preview.content.body_text,
        body_html=preview.content.body_html,
        headers=headers,
        message_id_domain=builder.domain,
    )
    to = envelope_address(address)
    url = builder.links.url(address, None)
    data, message_id = template.render(
        to, _editor_values(request, url), extra_headers=builder.links.headers(url)
    )
    message = Message(
        priority=Priority.HIGH,
        to_address=to,
        envelope_from=template.envelope_from,
        envelope_to=[to],
        subject=f"[TEST] {preview.preview_subject}"[:255],
        mime=data,
        message_id=message_id,
    )
    with transaction.atomic():
        message.save(force_insert=True)
        _wake(message)
    return address


def arrival_text() -> str:
    """When a queued email goes out, truthfully: soon if a worker has run in
    the last two minutes, otherwise at the next ``send_mail`` run."""
    from mailer.worker.health import last_run

    run = last_run()
    at = None
    if run and run.get("at"):
        try:
            at = datetime.fromisoformat(str(run["at"]))
            if timezone.is_naive(at):
                at = timezone.make_aware(at, timezone.get_default_timezone())
        except ValueError:
            at = None
    if at is not None and timezone.now() - at < timedelta(minutes=2):
        return _("A mail worker ran %(ago)s, so it should arrive within a minute.") % {
            "ago": _ago(at)
        }
    if at is not None:
        return _(
            "The last mail worker ran %(ago)s: it goes out when send_mail next runs."
        ) % {"ago": _ago(at)}
    return _("No mail worker has run yet: it goes out when send_mail first runs.")


def _ago(moment: datetime) -> str:
    """How long ago ``moment`` (aware, or naive local time) was, in words:
    "less than a minute ago" under a minute (``timesince`` alone says "0
    minutes"), else ``timesince``'s "3 minutes ago", "1 hour, 5 minutes
    ago". A moment ahead of this host's clock (another host's) counts as
    just now."""
    now = timezone.now() if timezone.is_aware(moment) else datetime.now()
    if now - moment < timedelta(minutes=1):
        return _("less than a minute ago")
    return _("%(time)s ago") % {"time": timesince(moment, now)}


def email_update_action(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: models.QuerySet
) -> HttpResponse | None:
    """The action: confirmation page first, jobs on "Yes, I'm sure"."""
    config: EmailUpdate = modeladmin.email_update
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied
    try:
        previews = [_prepare(config, obj, request) for obj in queryset]
    except TemplateProblem as error:
        # No page to show again: the email itself cannot be rendered.
        modeladmin.message_user(request, _refusal(error), messages.ERROR)
        return None
    if request.POST.get("send_test"):
        return _test_branch(modeladmin, request, config, previews)
    if request.POST.get("post") == "yes":
        return _confirm_branch(modeladmin, request, config, previews)
    return _confirmation_page(modeladmin, request, config, previews)


def _test_branch(modeladmin, request, config, previews) -> HttpResponse:
    """ "Send a test to me": queue the real email for the editor, show the
    page again."""
    try:
        address = send_test(config, previews[0], request)
    except InvalidEmail as error:
        modeladmin.message_user(request, str(error), messages.ERROR)
    else:
        modeladmin.message_user(
            request,
            _("A test email is queued for %(address)s. %(when)s")
            % {"address": address, "when": arrival_text()},
            messages.SUCCESS,
        )
    return _confirmation_page(modeladmin, request, config, previews)


def _refusal(error: Exception | str) -> str:
    """What the editor reads when the action queues nothing: "Nothing was
    queued." and then ``error`` (its text, from ``mailer.exceptions`` or the
    form) as a sentence of its own, ending with a full stop."""
    reason = str(error).strip()
    if reason and reason[-1] not in ".!?":
        reason += "."
    return _("Nothing was queued. %(reason)s") % {"reason": reason}


def _refuse(modeladmin, request, config, previews, error) -> HttpResponse:
    """The confirmation page again, with the editor's choices as posted
    (send now or at, the resend tick, the lists) and why nothing was
    queued."""
    modeladmin.message_user(request, _refusal(error), messages.ERROR)
    return _confirmation_page(modeladmin, request, config, previews)


def _confirm_branch(modeladmin, request, config, previews) -> HttpResponse | None:
    """ "Yes, I'm sure": one job per object, unless an object was emailed
    before and the resend box is not ticked, the time is not valid or there
    is nobody to send to; then the page again, choices kept."""
    from mailer.admin import parse_send_at

    emailed = [p for p in previews if p.earlier]
    if emailed and not request.POST.get("confirm_resend"):
        return _refuse(
            modeladmin,
            request,
            config,
            previews,
            _(
                "%(objects)s had an email update before: tick "
                "“Send again anyway” to resend."
            )
            % {"objects": ", ".join(str(p.obj) for p in emailed)},
        )
    try:
        send_at = parse_send_at(request.POST)
    except ValueError as error:
        return _refuse(modeladmin, request, config, previews, error)
    total = 0
    # An audience chosen on the page (a registered one, e.g. mailer.subscriptions'
    # lists) replaces the site's recipients; read once, a snapshot, for all
    # the ticked objects.
    chosen = next(
        (
            (audience, snapshot_recipients(found))
            for audience in AUDIENCES
            if (found := audience.recipients(request)) is not None
        ),
        None,
    )
    made = []
    try:
        with transaction.atomic():
            for preview in previews:
                recipients = preview.recipients
                options = {"list_id": config.list_id}
                if chosen is not None:
                    recipients = chosen[1]
                    options.update(chosen[0].job_options(request))
                job = create_job(
                    content=preview.content,
                    recipients=recipients,
                    from_email=config.from_email,
                    priority=config.priority,
                    announced_object=preview.obj,
                    created_by=request.user,
                    send_at=send_at,
                    **options,
                )
                if chosen is not None:
                    chosen[0].job_created(job, request)
                _log_job(request, job, preview.obj, send_at)
                made.append((job, preview.obj))
                total += len(recipients)
    except InvalidEmail as error:
        # E.g. a list with no active reader: the transaction is rolled back.
        return _refuse(modeladmin, request, config, previews, error)
    if len(made) == 1:
        text = ngettext(
            "Email update queued for %(count)s recipient.",
            "Email update queued for %(count)s recipients.",
            total,
        ) % {"count": grouped(total)}
    else:
        # One email per object and reader: two objects to the same 5,000
        # readers are 10,000 emails, not 10,000 recipients.
        text = ngettext(
            "%(n)s email update queued: %(total)s emails in all.",
            "%(n)s email updates queued: %(total)s emails in all.",
            len(made),
        ) % {"n": grouped(len(made)), "total": grouped(total)}
    if send_at is not None:
        text += " " + _("It goes out at %(when)s.") % {
            "when": date_format(_local(send_at), "DATETIME_FORMAT")
        }
    links = _report_links(modeladmin, made)
    if links:
        text = format_html("{} {}", text, links)
    modeladmin.message_user(request, text, messages.SUCCESS)
    return None


def _report_links(
    modeladmin: admin.ModelAdmin, made: list[tuple[Any, models.Model]]
) -> str:
    """Links to the new jobs' reports (their admin change page), for the
    success message: "See its report." for one job, "Reports: <object>,
    <object>." for several; empty when the admin site has no job admin."""
    from django.urls import NoReverseMatch, reverse

    try:
        urls = [
            reverse(
                "admin:mailer_messagejob_change",
                args=[job.pk],
                current_app=modeladmin.admin_site.name,
            )
            for job, _obj in made
        ]
    except NoReverseMatch:
        return ""
    if len(made) == 1:
        return format_html('<a href="{}">{}</a>', urls[0], _("See its report."))
    links = format_html_join(
        ", ",
        '<a href="{}">{}</a>',
        ((url, obj) for url, (_job, obj) in zip(urls, made, strict=True)),
    )
    return format_html("{} {}.", _("Reports:"), links)


def _log_job(request: HttpRequest, job: Any, obj: models.Model, send_at) -> None:
    """History on both sides (Django's LogEntry): the job ("Added") and the
    announced object, whose History then shows who emailed it and when."""
    from django.contrib.admin.models import ADDITION, CHANGE, LogEntry

    when = f" at {send_at.isoformat()}" if send_at else ""
    # English, like Django's own change messages, so English grouping too.
    readers = f"{job.recipient_count:,}"
    for target, flag, text in (
        (job, ADDITION, f"Confirmed for {readers} readers{when}"),
        (obj, CHANGE, f"Email update to {readers} readers{when}"),
    ):
        LogEntry.objects.log_actions(
            user_id=request.user.pk,
            queryset=[target],
            action_flag=flag,
            change_message=text,
            single_object=True,
        )


def _guard_text() -> str:
    from mailer.conf import conf

    minutes = int(conf.MAILER_RESEND_GUARD.total_seconds() // 60)
    return ngettext("%(n)d minute", "%(n)d minutes", minutes) % {"n": minutes}


def _readers(count: int) -> str:
    return ngettext("%(count)s recipient", "%(count)s recipients", count) % {
        "count": grouped(count)
    }


def summary(opts: Any, counts: list[int]) -> str:
    """The confirmation page's first line: what "Yes, I'm sure" queues, one
    email update per object, ``counts`` its recipients per object. Names
    the objects by the model's ``verbose_name`` / ``verbose_name_plural``
    ("about this issue", "about each of these 2 issues") and counts emails,
    not people: two issues to the same 5,000 readers are 10,000 emails, not
    10,000 recipients."""
    if len(counts) == 1:
        return _(
            "This will queue an email update about this %(object)s for %(readers)s:"
        ) % {
            "object": opts.verbose_name,
            "readers": _readers(counts[0]),
        }
    low, high = min(counts), max(counts)
    each = (
        _readers(low)
        if low == high
        else _("%(low)s to %(high)s")
        % {
            "low": grouped(low),
            "high": _readers(high),
        }
    )
    return ngettext(
        "This will queue %(n)s email update, one about each of these "
        "%(n)s %(objects)s, for %(each)s each (%(total)s emails in all):",
        "This will queue %(n)s email updates, one about each of these "
        "%(n)s %(objects)s, for %(each)s each (%(total)s emails in all):",
        len(counts),
    ) % {
        "n": grouped(len(counts)),
        "objects": opts.verbose_name_plural,
        "each": each,
        "total": grouped(sum(counts)),
    }


def _confirmation_page(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    config: EmailUpdate,
    previews: list[_Preview],
) -> TemplateResponse:
    from django.conf import settings

    opts = modeladmin.model._meta
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": _("Send email update"),
        "subtitle": None,
        "opts": opts,
        "app_label": opts.app_label,
        "previews": previews,
        "total_recipients": sum(len(p.recipients) for p in previews),
        "summary": summary(opts, [len(p.recipients) for p in previews]),
        "from_email": config.from_email or settings.DEFAULT_FROM_EMAIL,
        "any_recent": any(p.recent_job for p in previews),
        "any_earlier": any(p.earlier for p in previews),
        "guard": _guard_text(),
        "when": request.POST.get("when", "now"),
        "send_at_value": request.POST.get("send_at", ""),
        "confirm_resend": bool(request.POST.get("confirm_resend")),
        "time_zone": settings.TIME_ZONE,
        "arrival": arrival_text(),
        "now": timezone.now(),
        "queryset_ids": [p.obj.pk for p in previews],
        "action_name": ACTION_NAME,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "editor_email": request.user.email,
        "media": modeladmin.media,
        "audiences": [(a.template, a.context(request)) for a in AUDIENCES],
    }
    request.current_app = modeladmin.admin_site.name
    return TemplateResponse(
        request,
        [
            f"admin/{opts.app_label}/{opts.model_name}/send_email_update.html",
            f"admin/{opts.app_label}/send_email_update.html",
            "admin/mailer/send_email_update.html",
        ],
        context,
    )


def _local(value: datetime) -> datetime:
    """``value`` in the current time zone; a naive one (``USE_TZ = False``)
    is local time already."""
    return timezone.localtime(value) if timezone.is_aware(value) else value
