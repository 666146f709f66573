"""The reusable "Send email update" admin action.

Any ModelAdmin gets it in a few lines::

    from mailer.actions import EmailUpdate, EmailUpdateAdminMixin

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
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.core.mail import EmailMultiAlternatives
from django.db import models, transaction
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from mailer.exceptions import InvalidEmail, TemplateProblem
from mailer.jobs import (
    RecipientLike,
    RenderedEmail,
    create_job,
    recent_job_for,
    render_email,
    snapshot_recipients,
)
from mailer.personalize import Personalizer
from mailer.queue import enqueue

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
    (idempotent: an app's ``ready()`` may run twice in tests)."""
    if not any(type(a) is type(audience) for a in AUDIENCES):
        AUDIENCES.append(audience)


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


def _action(description: str) -> Callable:
    @admin.action(permissions=["mailer_send"], description=description)
    def send_email_update(
        modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: models.QuerySet
    ) -> HttpResponse | None:
        return email_update_action(modeladmin, request, queryset)

    return send_email_update


@dataclass
class _Preview:
    obj: models.Model
    content: RenderedEmail
    recipients: list
    preview_html: str
    preview_text: str
    preview_subject: str
    recent_job: Any


def _editor_values(request: HttpRequest) -> dict[str, str]:
    user = request.user
    return {
        "email": user.email or "editor@example.com",
        "name": user.get_full_name() or user.get_username(),
        "unsubscribe_url": "#unsubscribe-link-goes-here",
    }


def _prepare(config: EmailUpdate, obj: models.Model, request: HttpRequest) -> _Preview:
    content = config.render(obj)
    values = _editor_values(request)
    return _Preview(
        obj=obj,
        content=content,
        recipients=snapshot_recipients(config.recipients(obj)),
        preview_html=Personalizer(content.body_html, escape=True).render(values),
        preview_text=Personalizer(content.body_text).render(values),
        preview_subject=Personalizer(content.subject).render(values),
        recent_job=recent_job_for(obj),
    )


def send_test(config: EmailUpdate, preview: _Preview, request: HttpRequest) -> str:
    """One high-priority email to the editor, exactly as a reader gets it
    (with the editor's name). Queued like any other mail, never sent inside
    the request. Returns the address."""
    address = request.user.email
    if not address:
        raise InvalidEmail(_("Your user account has no email address."))
    email = EmailMultiAlternatives(
        subject=f"[TEST] {preview.preview_subject}",
        body=preview.preview_text,
        from_email=config.from_email,
        to=[address],
    )
    if preview.content.body_html:
        email.attach_alternative(preview.preview_html, "text/html")
    enqueue(email, priority="high")
    return address


def email_update_action(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: models.QuerySet
) -> HttpResponse | None:
    """The action: confirmation page first, jobs on "Yes, I'm sure"."""
    config: EmailUpdate = modeladmin.email_update
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied
    objects = list(queryset)
    try:
        previews = [_prepare(config, obj, request) for obj in objects]
    except TemplateProblem as error:
        modeladmin.message_user(
            request,
            _("Nothing was queued: %(error)s") % {"error": error},
            messages.ERROR,
        )
        return None

    if request.POST.get("send_test"):
        try:
            address = send_test(config, previews[0], request)
        except InvalidEmail as error:
            modeladmin.message_user(request, str(error), messages.ERROR)
        else:
            modeladmin.message_user(
                request,
                _(
                    "A test email is queued for %(address)s; it goes out with the "
                    "next send run (within seconds with a mail worker running)."
                )
                % {"address": address},
                messages.SUCCESS,
            )
        return _confirmation_page(modeladmin, request, config, previews)

    if request.POST.get("post") == "yes":
        blocked = [p for p in previews if p.recent_job is not None]
        if blocked and not request.POST.get("confirm_resend"):
            modeladmin.message_user(
                request,
                _(
                    "Not queued: %(objects)s already had an email update in the last "
                    "%(guard)s. Tick “Send again anyway” to resend."
                )
                % {
                    "objects": ", ".join(str(p.obj) for p in blocked),
                    "guard": _guard_text(),
                },
                messages.ERROR,
            )
            return _confirmation_page(modeladmin, request, config, previews)
        total = 0
        # Read once (a snapshot, not a generator) for all the ticked objects.
        chosen = next(
            (
                (a, snapshot_recipients(r))
                for a in AUDIENCES
                if (r := a.recipients(request)) is not None
            ),
            None,
        )
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
                        **options,
                    )
                    if chosen is not None:
                        chosen[0].job_created(job, request)
                    total += len(recipients)
        except InvalidEmail as error:
            modeladmin.message_user(
                request,
                _("Nothing was queued: %(error)s") % {"error": error},
                messages.ERROR,
            )
            return None
        modeladmin.message_user(
            request,
            ngettext(
                "Email update queued for %(count)s recipient.",
                "Email update queued for %(count)s recipients.",
                total,
            )
            % {"count": f"{total:,}"},
            messages.SUCCESS,
        )
        return None

    return _confirmation_page(modeladmin, request, config, previews)


def _guard_text() -> str:
    from mailer.conf import settings

    minutes = int(settings.RESEND_GUARD.total_seconds() // 60)
    return ngettext("%(n)d minute", "%(n)d minutes", minutes) % {"n": minutes}


def _confirmation_page(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    config: EmailUpdate,
    previews: list[_Preview],
) -> TemplateResponse:
    from django.conf import settings as django_settings

    opts = modeladmin.model._meta
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": _("Send email update"),
        "subtitle": None,
        "opts": opts,
        "app_label": opts.app_label,
        "previews": previews,
        "total_recipients": sum(len(p.recipients) for p in previews),
        "from_email": config.from_email or django_settings.DEFAULT_FROM_EMAIL,
        "any_recent": any(p.recent_job for p in previews),
        "guard": _guard_text(),
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
