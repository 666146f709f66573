"""The web archive: one job's email as a page ("view in browser") and a
list's past emails, both public and read-only."""

from __future__ import annotations

import re
from typing import Any

from django.http import Http404
from django.views.generic import ListView, TemplateView

__all__ = ["ArchiveEmailView", "ArchiveListView", "links_open_in_the_page"]


_HEAD = re.compile(r"<head(?:\s[^>]*)?>", re.IGNORECASE)


def links_open_in_the_page(html: str, target: str = "_top") -> str:
    """``html`` (str) with ``<base target="...">`` at the start of its head
    (or of the document), so that its links leave the sandboxed frame it is
    shown in: a link followed inside the frame would load the site there,
    which refuses to be framed (``X-Frame-Options: DENY``).

    ``target``: ``"_top"`` (the archive page; its frame's sandbox allows
    navigating the page on a reader's click only,
    ``allow-top-navigation-by-user-activation``, never scripts) or
    ``"_blank"`` (the admin's previews, whose frames allow popups: a link
    opens in a new tab and the editor keeps the page).
    """
    base = f'<base target="{target}">'
    head = _HEAD.search(html)
    if head is None:
        return base + html
    return html[: head.end()] + base + html[head.end() :]


class ArchiveEmailView(TemplateView):
    """One job's email as a public web page ("view in browser"), with
    per-recipient values filled neutrally. Template:
    ``mailer/archive_email.html`` (the site may override it)."""

    template_name = "mailer/archive_email.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        from mailer.jobs.archive import NEUTRAL, archive_url, job_for_token
        from mailer.jobs.personalize import Personalizer
        from mailer.models import JobStatus, MessageJob

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
            "html": links_open_in_the_page(
                Personalizer(job.body_html, escape=True).render(values)
            ),
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
        from mailer.jobs.archive import archive_url

        context = super().get_context_data(**kwargs)
        context["list_id"] = self.kwargs["list_id"]
        context["entries"] = [(job, archive_url(job.pk)) for job in context["jobs"]]
        return context
