"""Sending a newsletter to lists: the active subscribers of the chosen lists,
one email per canonical address, each carrying its own links."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from django.conf import settings as django_settings
from django.db import transaction

from mailer.jobs.services import RenderedEmail, create_job
from mailer.models import MessageJob

from .models import ListMailing, MailingList, Status, Subscription
from .services import preferences_url, unsubscribe_url

__all__ = [
    "ListAudience",
    "audience_count",
    "for_lists",
    "list_recipients",
    "send_to_lists",
]


def list_recipients(lists: Iterable[MailingList]) -> Iterator[dict[str, Any]]:
    """The active subscribers of ``lists``, one entry per canonical address
    (a reader on two of the lists gets one email), as ``create_job``
    recipients: ``{"email", "name", "unsubscribe_url", "preferences_url"}``.

    ``unsubscribe_url`` (the per-recipient value that the core writes into
    ``List-Unsubscribe`` too) removes the reader from those of ``lists``
    they are on, and no other list; ``preferences_url`` opens the
    preference centre."""
    list_ids = [m.pk for m in lists]
    by_address: dict[str, tuple[str, list[int]]] = {}
    rows = (
        Subscription.objects.filter(mailing_list_id__in=list_ids, status=Status.ACTIVE)
        .order_by("address", "mailing_list_id")
        .values_list("address", "name", "mailing_list_id")
    )
    for address, name, list_id in rows.iterator(chunk_size=5000):
        entry = by_address.get(address)
        if entry is None:
            by_address[address] = (name, [list_id])
        else:
            entry[1].append(list_id)
    for address, (name, ids) in by_address.items():
        yield {
            "email": address,
            "name": name,
            "unsubscribe_url": unsubscribe_url(address, ids),
            "preferences_url": preferences_url(address),
        }


def audience_count(lists: Iterable[MailingList]) -> int:
    """How many distinct addresses an email to ``lists`` reaches."""
    return (
        Subscription.objects.filter(mailing_list__in=list(lists), status=Status.ACTIVE)
        .values("address")
        .distinct()
        .count()
    )


def send_to_lists(
    content: RenderedEmail,
    lists: Iterable[MailingList],
    *,
    from_email: str | None = None,
    priority: str | int | None = "medium",
    announced_object: Any = None,
    created_by: Any = None,
) -> MessageJob:
    """Queue ``content`` for the active subscribers of ``lists`` through
    ``mailer.jobs.create_job``; the job records its lists
    (:class:`ListMailing`). The sender is ``from_email``, else the first
    list's From, else ``DEFAULT_FROM_EMAIL``; ``List-Id`` is the first
    list's. Raises :class:`~mailer.exceptions.InvalidEmail` when nobody is
    subscribed."""
    lists = list(lists)
    first = lists[0]
    headers = dict(content.headers)
    # RFC 8058: the per-recipient List-Unsubscribe URL takes a one-click POST.
    headers.setdefault("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
    content = RenderedEmail(
        subject=content.subject,
        body_text=content.body_text,
        body_html=content.body_html,
        headers=headers,
    )
    with transaction.atomic():
        job = create_job(
            content=content,
            recipients=list_recipients(lists),
            from_email=from_email
            or first.from_email
            or django_settings.DEFAULT_FROM_EMAIL,
            priority=priority,
            announced_object=announced_object,
            created_by=created_by,
            list_id=first.list_id,
        )
        ListMailing.objects.bulk_create(
            [ListMailing(job=job, mailing_list=m) for m in lists]
        )
    return job


def for_lists(*slugs: str):
    """A ``recipients`` callable for :class:`mailer.jobs.actions.EmailUpdate`:
    ``EmailUpdate(..., recipients=for_lists("daily-headlines"))``."""

    def recipients(obj: Any) -> Iterator[dict[str, Any]]:
        return list_recipients(MailingList.objects.filter(slug__in=slugs))

    return recipients


class ListAudience:
    """The lists offered on the "Send email update" confirmation page
    (``mailer.jobs.actions.register_audience``, which describes the methods;
    registered in ``apps.ready``).
    Ticking lists sends the update to their active subscribers instead of
    the update's own recipients; the page shows each list's count."""

    template = "admin/mailer_subscriptions/audience.html"
    field = "mailer_lists"

    def chosen(self, request: Any) -> list[MailingList]:
        """The lists ticked on the posted page, in id order."""
        ids = [i for i in request.POST.getlist(self.field) if i.isdigit()]
        return list(MailingList.objects.filter(pk__in=ids).order_by("pk"))

    def context(self, request: Any) -> dict[str, Any]:
        from django.db.models import Count, Q

        chosen = {m.pk for m in self.chosen(request)}
        lists = MailingList.objects.annotate(
            active_count=Count(
                "subscriptions", filter=Q(subscriptions__status=Status.ACTIVE)
            )
        )
        return {
            "field": self.field,
            "lists": [(m, m.pk in chosen) for m in lists],
        }

    def recipients(self, request: Any) -> Iterator[dict[str, Any]] | None:
        lists = self.chosen(request)
        return list_recipients(lists) if lists else None

    def job_options(self, request: Any) -> dict[str, Any]:
        return {"list_id": self.chosen(request)[0].list_id}

    def list_names(self, job: MessageJob) -> list[str]:
        """The names of the lists ``job`` went to (its ``ListMailing`` rows);
        for a job sent otherwise, the name of the one list whose ``List-Id``
        label is the job's (the same ``List-Id`` header: mail programs file
        them together), else none."""
        names = list(
            MailingList.objects.filter(mailings__job=job)
            .order_by("pk")
            .values_list("name", flat=True)
        )
        if names or not job.list_id:
            return names
        same = list(
            MailingList.objects.filter(list_id=job.list_id).values_list(
                "name", flat=True
            )[:2]
        )
        return same if len(same) == 1 else []

    def job_created(self, job: MessageJob, request: Any) -> None:
        ListMailing.objects.bulk_create(
            [ListMailing(job=job, mailing_list=m) for m in self.chosen(request)]
        )
