"""One-click unsubscribe (RFC 8058).

POST unsubscribes at once, with no login, cookie or CSRF token: the mailbox
provider posts ``List-Unsubscribe=One-Click`` on the reader's behalf, and
the signed token is the authorisation. GET only shows a confirmation page with
a button, because mail scanners and link previews follow every link.
"""

from __future__ import annotations

from typing import Any

from django.core import signing
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods
from django.views.generic import ListView, TemplateView

from mailer.suppression import unsubscribe as record_unsubscribe
from mailer.unsubscribe import read_token


@csrf_exempt
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    try:
        unsubscribe_request = read_token(token)
    except signing.BadSignature:
        raise Http404("This unsubscribe link is not valid.") from None
    context = {"address": unsubscribe_request.address, "token": token}
    if request.method == "GET":
        return render(request, "mailer/unsubscribe_confirm.html", context)
    record_unsubscribe(unsubscribe_request.address, job_id=unsubscribe_request.job_id)
    return render(request, "mailer/unsubscribe_done.html", context)


# -- the web archive (mailer/archive.py) ---------------------------------------


class ArchiveEmailView(TemplateView):
    """One job's email as a public web page ("view in browser"), with
    per-recipient values filled neutrally. Template:
    ``mailer/archive_email.html`` (the site may override it)."""

    template_name = "mailer/archive_email.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        from mailer.archive import NEUTRAL, archive_url, job_for_token
        from mailer.models import JobStatus, MessageJob
        from mailer.personalize import Personalizer

        job_id = job_for_token(kwargs["token"])
        job = (
            MessageJob.objects.defer("recipients")
            .filter(pk=job_id)
            .exclude(status=JobStatus.PENDING)
            .first()
            if job_id is not None
            else None
        )
        if job is None:
            raise Http404("No such email.")
        values = {**NEUTRAL, "archive_url": archive_url(job.pk)}
        return {
            **super().get_context_data(**kwargs),
            "job": job,
            "subject": Personalizer(job.subject).render(values),
            "html": Personalizer(job.body_html, escape=True).render(values),
            "text": Personalizer(job.body_text).render(values),
        }


class ArchiveListView(ListView):
    """Every email of one list (``List-Id`` label) that has gone out,
    newest first. Template: ``mailer/archive_list.html``."""

    template_name = "mailer/archive_list.html"
    context_object_name = "jobs"
    paginate_by = 50

    def get_queryset(self):
        from mailer.models import JobStatus, MessageJob

        return (
            MessageJob.objects.filter(
                list_id=self.kwargs["list_id"],
                status__in=[JobStatus.QUEUED, JobStatus.DONE],
            )
            .only("pk", "subject", "created_at", "list_id")
            .order_by("-created_at")
        )

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        from mailer.archive import archive_url

        context = super().get_context_data(**kwargs)
        context["list_id"] = self.kwargs["list_id"]
        context["entries"] = [(job, archive_url(job.pk)) for job in context["jobs"]]
        return context
