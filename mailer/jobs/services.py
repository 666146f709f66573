"""Making, cancelling and inspecting jobs: one newsletter, many recipients.

``create_job`` is what the admin action calls when the editor confirms. It
renders the templates once (per-recipient values stay placeholders, see
``personalize.py``), snapshots the recipients, and writes one row. It sends
nothing and creates no per-recipient rows: that is ``process_mail_jobs``'s
work, out of band, so the editor's request returns at once.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db import connections, models, router, transaction
from django.db.models import Count, Q
from django.template import TemplateDoesNotExist, TemplateSyntaxError
from django.template.loader import render_to_string
from django.utils import timezone

from mailer.addresses import addr_spec, normalize
from mailer.conf import conf
from mailer.dbclock import DbNow
from mailer.door import check_headers, check_size
from mailer.exceptions import InvalidEmail, TemplateProblem
from mailer.jobs.compose import mailboxes, static_header
from mailer.jobs.htmltext import html_to_text
from mailer.jobs.personalize import (
    RecipientPlaceholders,
    find_broken_segment,
    find_intact,
    find_mangled,
    mangled_kind,
)
from mailer.jobs.templatecheck import SEGMENTS_PAIR, USE_AS_IS, check_recipient_use
from mailer.models import (
    PENDING_STATUSES,
    JobStatus,
    LogResult,
    Message,
    MessageJob,
    MessageLog,
    MessageStatus,
)
from mailer.queue import parse_priority

__all__ = [
    "RecipientLike",
    "RecipientSnapshot",
    "RenderedEmail",
    "cancel_jobs",
    "create_job",
    "delete_jobs",
    "finish_job_if_done",
    "finish_jobs",
    "job_progress",
    "jobs_waiting",
    "pause_jobs",
    "pending_count",
    "recent_job_for",
    "render_email",
    "reschedule_jobs",
    "resume_jobs",
    "retry_failed",
    "snapshot_recipients",
    "waiting_to_start",
]

#: What a recipients callable may yield: an address, (address, context), or
#: a mapping with "email" and any other per-recipient values ("name", ...).
RecipientLike = str | tuple[str, Mapping[str, Any]] | Mapping[str, Any]


@dataclass
class RenderedEmail:
    """A job's content, rendered once: the subject (one line), the text body,
    the HTML body (``""``: text only) and extra header fields."""

    subject: str
    body_text: str
    body_html: str = ""
    headers: dict[str, str] = field(default_factory=dict)


def render_email(
    *,
    subject: str | Callable[[Any], str],
    text_template: str | None,
    html_template: str | None = None,
    context: Mapping[str, Any] | None = None,
    obj: Any = None,
) -> RenderedEmail:
    """Render a job's content once. Raises :class:`TemplateProblem` with a
    message an editor can act on when a template is missing or broken, or
    uses a per-recipient value other than as it is (``templatecheck``).

    Templates are rendered with Django's ``render_to_string``
    (https://docs.djangoproject.com/en/stable/topics/templates/) and the
    context ``{"object": obj, "recipient": ..., **context}``, where
    ``recipient.<field>`` renders a placeholder filled in per reader at send
    time. ``subject`` is text or a callable of ``obj``. Without a text
    template, the text part is made from the HTML (``htmltext``).
    """
    if not text_template and not html_template:
        raise TemplateProblem("A job needs a text template, an HTML template or both")
    ctx = {"object": obj, "recipient": RecipientPlaceholders(), **(context or {})}
    try:
        subject_text = str(subject(obj) if callable(subject) else subject)
        body_html = render_to_string(html_template, ctx) if html_template else ""
        body_text = (
            render_to_string(text_template, ctx)
            if text_template
            else html_to_text(body_html)
        )
    except TemplateDoesNotExist as error:
        raise TemplateProblem(f"Email template not found: {error}") from error
    except TemplateSyntaxError as error:
        raise TemplateProblem(f"Email template has an error: {error}") from error
    except TemplateProblem:
        raise
    except Exception as error:
        raise TemplateProblem(
            f"Rendering the email failed: {type(error).__name__}: {error}"
        ) from error
    subject_text = " ".join(subject_text.split())
    if not subject_text:
        raise TemplateProblem("The email subject is empty")
    content = RenderedEmail(
        subject=subject_text, body_text=body_text, body_html=body_html
    )
    _check_text(content, TemplateProblem)
    if isinstance(ctx["recipient"], RecipientPlaceholders):
        for name, rendered, escape, kind in (
            (html_template, body_html, True, "HTML"),
            (text_template, body_text, False, "text"),
        ):
            if name:
                check_recipient_use(name, ctx, rendered, escape=escape, kind=kind)
    check_placeholders(content, TemplateProblem)
    return content


def check_placeholders(
    content: RenderedEmail, error_class: type[InvalidEmail] = InvalidEmail
) -> None:
    """Refuse content holding a damaged placeholder or segment marker
    (``[[MJ:NAME]]``, an escaped or partial one; see
    ``personalize.find_mangled``): every reader would receive it as it is;
    and segment markers that do not pair up (``find_broken_segment``), which
    could not be sent at all; and any placeholder or segment marker in a
    header, since a job's headers are the same for every reader and would
    carry it as it is. Raises ``error_class`` naming the part and the line
    (the header)."""
    for part, value in (
        ("subject", content.subject),
        ("text body", content.body_text),
        ("HTML body", content.body_html),
        *((f"header {name}", str(value)) for name, value in content.headers.items()),
    ):
        found = find_mangled(value)
        if found is not None:
            number, line = found
            raise error_class(
                f"The {part} holds a damaged per-recipient {mangled_kind(line)}, "
                f"line {number}: {line}. {USE_AS_IS}"
            )
        broken = find_broken_segment(value)
        if broken is not None:
            raise error_class(
                f"The {part} holds a broken per-recipient segment, line "
                f"{broken.number}: {broken.line}. {broken.reason}. {SEGMENTS_PAIR}"
            )
    for name, value in content.headers.items():
        intact = find_intact(str(value))
        if intact is not None:
            raise error_class(
                f"The header {name} holds a per-recipient value ({intact}): a "
                f"job's headers are the same for every reader, so it would go "
                f"out as it is. Only the subject and the bodies are filled in "
                f"per reader."
            )


def _check_text(content: RenderedEmail, error_class: type[InvalidEmail]) -> int:
    """Refuse content that cannot be sent as UTF-8 (a lone surrogate from
    badly decoded data); return its size in bytes."""
    size = 0
    for name, value in (
        ("subject", content.subject),
        ("text body", content.body_text),
        ("HTML body", content.body_html),
    ):
        try:
            size += len(value.encode("utf-8"))
        except UnicodeEncodeError as error:
            raise error_class(
                f"The {name} is not valid text (it cannot be encoded as UTF-8 "
                f"at position {error.start})"
            ) from error
    return size


class RecipientSnapshot(list):
    """Recipients already normalised by :func:`snapshot_recipients`."""


def snapshot_recipients(recipients: Iterable[RecipientLike]) -> list:
    """Normalise recipients into the stored snapshot, dropping duplicates by
    canonical identity (``addresses.normalize``; the first wins). Addresses
    are validated at expansion, where an invalid one is logged and skipped:
    a single typo among 100,000 subscribers must not stop a newsletter."""
    if isinstance(recipients, RecipientSnapshot):
        return recipients
    with _collector_paused():
        return _snapshot(recipients)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector around building a snapshot.

    A 100,000-subscriber snapshot allocates some 300,000 containers (the
    queryset's dicts, the entries, their contexts) in a few tenths of a
    second, and the collector answers that growth with full collections that
    walk every object in the process: two or three, 100-200 ms of the
    editor's request. The snapshot holds no cycles, so they find nothing;
    reference counting frees what is dropped as usual, and any cyclic garbage
    made meanwhile waits for the next collection, after the request.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _snapshot(recipients: Iterable[RecipientLike]) -> RecipientSnapshot:
    seen: set[str] = set()
    snapshot = RecipientSnapshot()
    append, add = snapshot.append, seen.add
    # This loop runs once per subscriber inside the editor's request. The
    # dict a values() queryset yields is recognised by its exact type first:
    # an isinstance() against the Mapping ABC cost as much as the rest of the
    # loop, and so did a dict comprehension to leave out "email".
    for item in recipients:
        if isinstance(item, str):
            address, context = item, None
        elif type(item) is dict or isinstance(item, Mapping):
            context = dict(item)
            address = context.pop("email", "")
        else:
            address, context = item[0], (dict(item[1]) if item[1] else None)
        if type(address) is not str:
            address = str(address)
        address = address.strip()
        # The canonical identity (``addresses.normalize``): "Anna <a@x>" and
        # "a@x", or an IDN domain in either spelling, are one reader. Plain
        # ASCII addresses, nearly all of them, need only lower-casing.
        key = address.lower()
        if key.endswith(">") or not key.isascii():
            key = normalize(address)
        if not address or key in seen:
            continue
        add(key)
        append([address, context] if context else address)
    return snapshot


def create_job(
    *,
    content: RenderedEmail,
    recipients: Iterable[RecipientLike],
    from_email: str | None = None,
    priority: str | int | None = "medium",
    announced_object: models.Model | None = None,
    created_by: Any = None,
    list_id: str = "",
    expires_at: datetime | None = None,
    expire_after: timedelta | float | None = None,
    send_at: datetime | None = None,
) -> MessageJob:
    """Queue a newsletter for the given recipients; return the job.

    ``expires_at`` (an aware datetime; naive local time with
    ``USE_TZ = False``) or ``expire_after`` (a ``timedelta``
    or seconds from now): news goes stale, so mail of this job still
    undelivered then (a relay in trouble, a recipient's server deferring)
    fails with the reason "expired" instead of going out late. Without
    either, a temporarily failing message is retried for
    ``MAILER_MAX_RETRY_SECONDS``.

    ``send_at`` (an aware datetime) schedules it: the job is neither
    expanded nor sent before then, and can be rescheduled or cancelled until
    it starts (``reschedule_jobs``, ``cancel_jobs``).

    Raises :class:`InvalidEmail` (nothing saved) for a bad sender or headers,
    when there is nobody to send to, when both expiry arguments are given or
    the expiry is not in the future, and for a naive ``send_at`` while
    ``USE_TZ`` is on.

    :param content: the job's rendered content (:func:`render_email`), with
        per-recipient values as placeholders.
    :param recipients: addresses, ``(address, context)`` pairs or mappings
        with ``"email"`` (:data:`RecipientLike`); snapshotted now, duplicates
        dropped (:func:`snapshot_recipients`), invalid ones skipped and logged
        at expansion.
    :param from_email: the sender (``DEFAULT_FROM_EMAIL`` when ``None``).
    :param priority: ``"high"``, ``"medium"``, ``"low"`` or django-mailer's
        1 to 3.
    :param announced_object: the model instance the email is about; its
        model name is the default ``list_id``.
    :param list_id: the ``List-Id`` label (RFC 2919 list-label).
    :raises mailer.exceptions.HeaderInjection: a line break in the subject or
        a header.
    :raises mailer.exceptions.InvalidAddress: an invalid sender or address
        header.
    :raises mailer.exceptions.MessageTooLarge: over
        ``MAILER_MAX_MESSAGE_BYTES`` (bytes).
    :raises ValueError: an unknown ``priority``.

    The job is expanded by ``process_mail_jobs`` (or a worker, woken when the
    transaction commits) and sent by ``send_mail``; headers are written as
    RFC 5322 says (``mailer.jobs.compose``).
    """
    if expires_at is not None and expire_after is not None:
        raise InvalidEmail("Give expires_at or expire_after, not both")
    if expire_after is not None:
        if not isinstance(expire_after, timedelta):
            expire_after = timedelta(seconds=expire_after)
        expires_at = timezone.now() + expire_after
    if expires_at is not None:
        from django.conf import settings

        # As Django's DateTimeField: aware with USE_TZ, naive local without.
        if settings.USE_TZ and timezone.is_naive(expires_at):
            raise InvalidEmail("expires_at must be an aware datetime")
        if not settings.USE_TZ and timezone.is_aware(expires_at):
            expires_at = timezone.make_naive(expires_at)
        if expires_at <= timezone.now():
            raise InvalidEmail(f"expires_at {expires_at} is not in the future")
    from django.conf import settings

    from_email = from_email or settings.DEFAULT_FROM_EMAIL
    check_headers([("Subject", content.subject), ("From", from_email)])
    check_headers(content.headers.items())
    addr_spec(from_email)
    # The door for job mail, as queue.build is for single mail: content
    # passed in directly, not through render_email, is checked here for
    # UTF-8 (else the database driver fails with a bare UnicodeEncodeError)
    # and for size (else every recipient's relay refuses the newsletter, one
    # 552 at a time).
    size = _check_text(content, InvalidEmail)
    check_placeholders(content)
    _check_headers(from_email, content.headers)
    check_size(size)
    level, _held = parse_priority(priority, conf.MAILER_DEFAULT_PRIORITY)
    _check_send_at(send_at)
    snapshot = snapshot_recipients(recipients)
    if not snapshot:
        raise InvalidEmail("There are no recipients to send this email to")
    if announced_object is not None and not list_id:
        list_id = announced_object._meta.model_name
    if list_id and not _LIST_LABEL.fullmatch(list_id):
        raise InvalidEmail(
            f"The list id {list_id!r} must be ASCII letters, digits and dots "
            "(the List-Id header's list-label, RFC 2919)"
        )
    job = MessageJob(
        subject=content.subject,
        from_email=from_email,
        body_text=content.body_text,
        body_html=content.body_html,
        headers=content.headers,
        priority=level,
        recipients=snapshot,
        recipient_count=len(snapshot),
        list_id=list_id,
        created_by=created_by if getattr(created_by, "pk", None) else None,
        expires_at=expires_at,
        send_at=send_at,
    )
    if announced_object is not None:
        job.content_type = ContentType.objects.get_for_model(announced_object)
        job.object_id = str(announced_object.pk)
    # Wake a worker to expand it once the editor's transaction commits: the
    # row and its NOTIFY commit together (no savepoint inside a caller's
    # transaction).
    from mailer.worker.wakeup import EXPAND, announce

    with transaction.atomic(using=router.db_for_write(MessageJob), savepoint=False):
        job.save(force_insert=True)
        announce(EXPAND, using=job._state.db)
    return job


#: RFC 2919's list-label: a dot-atom of ASCII letters and digits (and the
#: other atext characters), written as is into ``List-Id``.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LIST_LABEL = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*")


def _check_headers(from_email: str, headers: Mapping[str, str]) -> None:
    """Refuse a job whose sender or address headers would not be written as
    addresses (``compose.static_header``), and a ``Bcc`` header, which every
    reader would see. Raises :class:`InvalidEmail`."""
    max_length = MessageJob._meta.get_field("from_email").max_length
    if len(from_email) > max_length:
        raise InvalidEmail(
            f"The sender is {len(from_email):,} characters, over {max_length}"
        )
    mailboxes(from_email)
    for name, value in headers.items():
        if name.lower() in ("bcc", "resent-bcc"):
            raise InvalidEmail(
                f"A job cannot carry a {name} header: every reader would see it"
            )
        static_header(name, value)


def recent_job_for(
    obj: models.Model, *, now: datetime | None = None
) -> MessageJob | None:
    """The newest job announcing ``obj`` within ``MAILER_RESEND_GUARD``."""
    since = (now or timezone.now()) - conf.MAILER_RESEND_GUARD
    return (
        MessageJob.objects.defer("recipients")
        .filter(
            content_type=ContentType.objects.get_for_model(obj),
            object_id=str(obj.pk),
            created_at__gte=since,
        )
        .exclude(status=JobStatus.CANCELLED)
        .order_by("-created_at")
        .first()
    )


def job_progress(job: MessageJob) -> dict[str, int]:
    """Messages of ``job`` by status name (queued, sent, deferred, ...):
    ``{name: count}``."""
    counts = {status.name.lower(): 0 for status in MessageStatus}
    for status, n in (
        Message.all_objects.filter(job=job)
        .order_by()
        .values_list("status")
        .annotate(n=Count("id"))
    ):
        counts[MessageStatus(status).name.lower()] = n
    return counts


def cancel_jobs(jobs: models.QuerySet) -> tuple[int, int]:
    """Cancel jobs; their pending messages leave the queue, each logged as
    cancelled. Return (jobs cancelled, messages cancelled)."""
    now = timezone.now()
    job_count = message_count = 0
    for job in jobs.defer("recipients").exclude(
        status__in=[JobStatus.CANCELLED, JobStatus.DONE]
    ):
        with transaction.atomic():
            pending = Message.all_objects.filter(job=job, status__in=PENDING_STATUSES)
            rows = list(pending.values_list("id", "to_address"))
            # Clearing the token makes a worker's later "sent" write a no-op;
            # a message already on the wire cannot be called back.
            pending.update(
                status=MessageStatus.CANCELLED, claim_token=None, due_at=None
            )
            MessageLog.objects.bulk_create(
                [
                    MessageLog(
                        message_pk=pk,
                        job=job,
                        recipient=address,
                        result=LogResult.CANCELLED,
                        reply="job cancelled",
                        created_at=now,
                    )
                    for pk, address in rows
                ],
                batch_size=2000,
            )
            MessageJob.objects.filter(pk=job.pk).update(
                status=JobStatus.CANCELLED, finished_at=now
            )
        job_count += 1
        message_count += len(rows)
    return job_count, message_count


def retry_failed(jobs: models.QuerySet) -> int:
    """Queue the failed messages of ``jobs`` again, with fresh attempts;
    return how many messages (``int``)."""
    count = Message.all_objects.filter(
        job__in=jobs.exclude(status=JobStatus.CANCELLED), status=MessageStatus.FAILED
    ).update(status=MessageStatus.QUEUED, due_at=DbNow(), attempts=0)
    if count:
        jobs.filter(status=JobStatus.DONE).update(
            status=JobStatus.QUEUED, finished_at=None
        )
        from mailer.worker.wakeup import SEND, announce

        announce(SEND)
    return count


def finish_jobs() -> int:
    """Mark fully expanded jobs with nothing pending as done; return how many
    jobs (``int``)."""
    done = 0
    for job_id in MessageJob.objects.filter(status=JobStatus.QUEUED).values_list(
        "id", flat=True
    ):
        if not Message.all_objects.filter(
            job_id=job_id, status__in=PENDING_STATUSES
        ).exists():
            done += MessageJob.objects.filter(
                ~Q(status=JobStatus.CANCELLED), pk=job_id, status=JobStatus.QUEUED
            ).update(status=JobStatus.DONE, finished_at=timezone.now())
    return done


def _check_send_at(send_at: datetime | None) -> None:
    from django.conf import settings

    if send_at is None:
        return
    if not isinstance(send_at, datetime):
        raise InvalidEmail(f"send_at must be a datetime, not {send_at!r}")
    if settings.USE_TZ and timezone.is_naive(send_at):
        raise InvalidEmail(
            "send_at must be an aware datetime (with a time zone) when USE_TZ is on"
        )


def waiting_to_start(now: datetime | None = None) -> Q:
    """Jobs whose time has come: not scheduled for later (``send_at``)."""
    return Q(send_at__isnull=True) | Q(send_at__lte=now or timezone.now())


def reschedule_jobs(jobs: models.QuerySet, send_at: datetime | None) -> int:
    """Move scheduled jobs that have not started to ``send_at`` (None: send
    now). Jobs already expanding or sending are left alone. Returns how many
    moved. Raises :class:`InvalidEmail` for a naive ``send_at``."""
    _check_send_at(send_at)
    count = jobs.filter(status=JobStatus.PENDING, expanded_count=0).update(
        send_at=send_at
    )
    if count:
        from mailer.worker.wakeup import EXPAND, announce

        announce(EXPAND)
    return count


def pending_count(jobs: models.QuerySet) -> int:
    """Emails of ``jobs`` that have not gone yet: pending messages plus
    readers not yet expanded (what a cancel stops)."""
    jobs = jobs.exclude(status__in=[JobStatus.CANCELLED, JobStatus.DONE])
    pending = Message.all_objects.filter(
        job__in=jobs, status__in=PENDING_STATUSES
    ).count()
    unexpanded = sum(
        max(0, total - done)
        for total, done in jobs.values_list("recipient_count", "expanded_count")
    )
    return pending + unexpanded


def pause_jobs(jobs: models.QuerySet) -> int:
    """Pause jobs still expanding or sending: expansion stops, and their
    pending messages leave the claim index (``due_at`` NULL, status kept) so
    no worker takes them. A message a worker holds right now (claimed) goes
    out or not as that worker decides. Returns the jobs paused."""
    paused = 0
    for job_id in jobs.filter(
        status__in=[JobStatus.PENDING, JobStatus.EXPANDING, JobStatus.QUEUED]
    ).values_list("id", flat=True):
        with transaction.atomic():
            if not MessageJob.objects.filter(
                pk=job_id,
                status__in=[JobStatus.PENDING, JobStatus.EXPANDING, JobStatus.QUEUED],
            ).update(status=JobStatus.PAUSED):
                continue
            Message.all_objects.filter(
                job_id=job_id, status__in=PENDING_STATUSES, claim_token__isnull=True
            ).update(due_at=None)
        paused += 1
    return paused


def resume_jobs(jobs: models.QuerySet) -> int:
    """Resume paused jobs: expansion continues from its cursor, pending
    messages are due now. Returns the jobs resumed."""
    resumed = 0
    now = timezone.now()
    for job in jobs.filter(status=JobStatus.PAUSED).defer("recipients"):
        unexpanded = job.expanded_count < job.recipient_count
        status = JobStatus.EXPANDING if unexpanded else JobStatus.QUEUED
        with transaction.atomic():
            if not MessageJob.objects.filter(pk=job.pk, status=JobStatus.PAUSED).update(
                status=status
            ):
                continue
            Message.all_objects.filter(
                job_id=job.pk, status__in=PENDING_STATUSES, due_at__isnull=True
            ).update(due_at=now)
        resumed += 1
    if resumed:
        from mailer.worker.wakeup import EXPAND, SEND, announce

        announce(EXPAND)
        announce(SEND)
    return resumed


def jobs_waiting(now: datetime | None = None) -> tuple[int, int]:
    """(jobs due to be expanded, jobs scheduled for later): what a send run
    cannot see in the queue yet. One query over the partial index of jobs
    to expand."""
    now = now or timezone.now()
    rows = MessageJob.objects.filter(
        status__in=[JobStatus.PENDING, JobStatus.EXPANDING]
    ).aggregate(
        due=Count("id", filter=waiting_to_start(now)),
        later=Count("id", filter=~waiting_to_start(now)),
    )
    return rows["due"], rows["later"]


def finish_job_if_done(job: MessageJob) -> bool:
    """Mark ``job`` done if it is fully expanded and nothing is pending (the
    report calls this, so a finished job never reads "queued")."""
    if job.status != JobStatus.QUEUED:
        return False
    if Message.all_objects.filter(job=job, status__in=PENDING_STATUSES).exists():
        return False
    now = timezone.now()
    if MessageJob.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(
        status=JobStatus.DONE, finished_at=now
    ):
        job.status, job.finished_at = JobStatus.DONE, now
        return True
    return False


def delete_jobs(jobs: models.QuerySet) -> int:
    """Delete ``jobs`` (a ``MessageJob`` queryset) with their messages, in one
    transaction, in a handful of statements whatever the number of readers.

    Django's deletion collector would load every message first (each has a
    ``retry_of`` link that must be cleared), which takes tens of seconds for
    a 100,000-reader job and holds the admin request as long. Here the links
    into those messages are cleared with one UPDATE, the messages go with one
    DELETE, and the jobs through Django's ``delete()`` (so the attempt log
    keeps its rows, ``job`` set to NULL, as ``on_delete=SET_NULL`` says).

    Returns the number of messages deleted.
    """
    db = router.db_for_write(MessageJob)
    with transaction.atomic(using=db):
        ids = list(jobs.using(db).values_list("pk", flat=True))
        if not ids:
            return 0
        messages = Message.all_objects.using(db).filter(job_id__in=ids)
        Message.all_objects.using(db).filter(retry_of__in=messages).update(
            retry_of=None
        )
        MessageLog.objects.using(db).filter(job_id__in=ids).update(job=None)
        # One DELETE: nothing points at these rows any more, and Message
        # sends no delete signals (QuerySet.delete() would still collect).
        connection = connections[db]
        table = connection.ops.quote_name(Message._meta.db_table)
        column = connection.ops.quote_name(Message._meta.get_field("job").column)
        marks = ", ".join(["%s"] * len(ids))
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", ids)
            deleted = cursor.rowcount
        MessageJob.objects.using(db).filter(pk__in=ids).delete()
    return deleted
