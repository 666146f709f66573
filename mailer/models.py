"""The queue's data. No sending logic lives here: see ``mailer/sending/``.

The queue table (``Message``) holds one row per email; a job's messages share
the job's content instead of storing a copy each. Every attempt is a
``MessageLog`` row, which never holds a body.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

# django-mailer's ``mailer.models.make_message``; its one definition is in
# mailer.legacy.api, which imports no models at import time.
from mailer.legacy.api import make_message  # noqa: F401
from mailer.querysets import (
    DontSendEntryManager,
    MessageLogManager,
    MessageQuerySet,
    QueueManager,
)

__all__ = [
    "PRIORITY_HIGH",
    "PRIORITY_MEDIUM",
    "PRIORITY_LOW",
    "PRIORITY_DEFERRED",
    "PRIORITIES",
    "PRIORITY_MAPPING",
    "RESULT_SUCCESS",
    "RESULT_DONT_SEND",
    "RESULT_FAILURE",
    "RESULT_CODES",
    "Priority",
    "MessageStatus",
    "PENDING_STATUSES",
    "JobStatus",
    "LogResult",
    "SuppressionReason",
    "MessageJob",
    "Message",
    "MessageLog",
    "DontSendEntry",
    "RateWindow",
    "RelayPause",
    "WorkerState",
    "make_message",
]

# django-mailer's names for the priorities (``mailer.models.PRIORITY_*``).
# ``PRIORITY_DEFERRED`` is no level of its own here: mail queued with it is
# held (status deferred) until ``retry_deferred`` releases it at medium.
PRIORITY_HIGH = 1
PRIORITY_MEDIUM = 2
PRIORITY_LOW = 3
PRIORITY_DEFERRED = 4
PRIORITIES = [
    (PRIORITY_HIGH, "high"),
    (PRIORITY_MEDIUM, "medium"),
    (PRIORITY_LOW, "low"),
    (PRIORITY_DEFERRED, "deferred"),
]
PRIORITY_MAPPING = {label: value for value, label in PRIORITIES}

# django-mailer's log result codes, as ``purge_old_entries`` takes them.
RESULT_SUCCESS = "1"
RESULT_DONT_SEND = "2"
RESULT_FAILURE = "3"
RESULT_CODES = (
    (RESULT_SUCCESS, "success"),
    (RESULT_DONT_SEND, "don't send"),
    (RESULT_FAILURE, "failure"),
)


class Priority(models.IntegerChoices):
    """Lower sorts first: the claim query orders by priority ascending."""

    HIGH = 1, _("high")
    MEDIUM = 2, _("medium")
    LOW = 3, _("low")


class MessageStatus(models.IntegerChoices):
    """Where a ``Message`` is: queued, deferred and in doubt are pending
    (:data:`PENDING_STATUSES`: a worker may still send them); the rest are
    final."""

    QUEUED = 0, _("queued")
    DEFERRED = 1, _("deferred")
    SENT = 2, _("sent")
    FAILED = 3, _("failed")
    SUPPRESSED = 4, _("suppressed")
    CANCELLED = 5, _("cancelled")
    #: The relay went silent after the end of DATA: it may have the message.
    #: Tried again later (``MAILER_IN_DOUBT_RETRY_SECONDS``), same Message-ID.
    IN_DOUBT = 6, _("in doubt")
    #: In doubt and out of retries: never sent again by itself, never called
    #: failed (it may have been delivered). An operator can release it.
    IN_DOUBT_HELD = 7, _("in doubt, not retried")


#: Statuses still waiting to go out; the claim index covers only these rows.
PENDING_STATUSES = (
    MessageStatus.QUEUED,
    MessageStatus.DEFERRED,
    MessageStatus.IN_DOUBT,
)


class JobStatus(models.TextChoices):
    """A ``MessageJob``'s life: pending (saved, not expanded), expanding
    (``process_mail_jobs`` is making its messages), queued (all made, some
    unsent), done, cancelled or paused."""

    PENDING = "pending", _("pending")
    EXPANDING = "expanding", _("expanding")
    QUEUED = "queued", _("queued")
    DONE = "done", _("done")
    CANCELLED = "cancelled", _("cancelled")
    #: Paused by staff: not expanded, its pending messages not due until
    #: resumed (``mailer.jobs.pause_jobs``).
    PAUSED = "paused", _("paused")


class LogResult(models.IntegerChoices):
    """What one ``MessageLog`` row records: an attempt's outcome, a skip or
    cancellation, or a later report (bounce, complaint). 1 (sent) and 3
    (failed) keep django-mailer's ``RESULT_SUCCESS`` / ``RESULT_FAILURE``
    numbers."""

    SENT = 1, _("sent")
    DEFERRED = 2, _("deferred")
    FAILED = 3, _("failed")
    SUPPRESSED = 4, _("suppressed")
    CANCELLED = 5, _("cancelled")
    SKIPPED = 6, _("skipped at expansion")
    #: No reply after the end of DATA (timeout, reset): maybe delivered.
    IN_DOUBT = 7, _("in doubt")
    #: Reported later by a delivery status notification or a complaint
    #: report (``manage.py process_bounces``, mailer/bounces).
    BOUNCED = 8, _("bounced")
    SOFT_BOUNCED = 9, _("soft bounce")
    COMPLAINED = 10, _("complained")


class MessageJob(models.Model):
    """One newsletter: content rendered once, plus who gets it.

    The recipients are a snapshot taken when the editor confirms (see
    ``mailer.jobs.create_job``): the count the editor confirmed is exactly the
    audience, and the cron process never needs to import or re-run the site's
    recipient query. Unsubscribes after the click are still honoured, because
    the don't-send list is checked at expansion and again right before sending.
    """

    subject = models.TextField(_("subject"))
    # The sender with its display name, as given: the address is at most 254
    # characters, but a display name may be long (Django's own single mail
    # takes any length). 998 is RFC 5322's line limit; longer is refused by
    # create_job with a clear error.
    from_email = models.CharField(_("from"), max_length=998)
    body_text = models.TextField(_("text body"))
    body_html = models.TextField(_("HTML body"), blank=True)
    headers = models.JSONField(_("extra headers"), default=dict, blank=True)
    list_id = models.CharField(
        _("list id"),
        max_length=100,
        blank=True,
        help_text=_("Kind of mailing, used in the List-Id header (e.g. 'issue')."),
    )
    priority = models.PositiveSmallIntegerField(
        _("priority"), choices=Priority.choices, default=Priority.MEDIUM
    )
    status = models.CharField(
        _("status"), max_length=10, choices=JobStatus.choices, default=JobStatus.PENDING
    )
    # The snapshot: a JSON list, each item an address or [address, {context}].
    recipients = models.JSONField(_("recipients"), default=list, blank=True)
    recipient_count = models.PositiveIntegerField(_("recipients"), default=0)
    expanded_count = models.PositiveIntegerField(
        _("expanded"),
        default=0,
        help_text=_("Expansion cursor: snapshot entries already turned into mail."),
    )
    skipped_count = models.PositiveIntegerField(
        _("skipped"),
        default=0,
        help_text=_("Duplicates, invalid and suppressed addresses not queued."),
    )
    content_type = models.ForeignKey(
        ContentType, null=True, blank=True, on_delete=models.SET_NULL
    )
    object_id = models.CharField(max_length=64, blank=True)
    announced_object = GenericForeignKey("content_type", "object_id")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    expires_at = models.DateTimeField(
        _("expires"),
        null=True,
        blank=True,
        help_text=_(
            "News goes stale: mail of this job not delivered by then fails "
            "as 'expired' instead of being retried."
        ),
    )
    #: Not expanded nor sent before this time (``create_job(send_at=...)``);
    #: empty for "send now".
    send_at = models.DateTimeField(_("send at"), null=True, blank=True)

    class Meta:
        verbose_name = _("message job")
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["content_type", "object_id", "created_at"]),
            models.Index(
                fields=["created_at"],
                condition=Q(status__in=["pending", "expanding"]),
                name="mailer_job_to_expand",
            ),
        ]

    def __str__(self) -> str:
        # The subject alone: this text is kept where the status changes
        # under it (LogEntry.object_repr, the admin's "Recent actions",
        # written when the job is confirmed), so it holds nothing transient.
        return self.subject

    @property
    def is_scheduled(self) -> bool:
        """Pending and due later: nothing is expanded or sent before
        ``send_at``."""
        return (
            self.status == JobStatus.PENDING
            and self.send_at is not None
            and self.send_at > timezone.now()
        )

    @property
    def display_status(self) -> str:
        """The status as the admin and ``mailer_status`` show it: a pending
        job due later reads "scheduled"."""
        if self.is_scheduled:
            return str(_("scheduled"))
        return str(self.get_status_display())


class Message(models.Model):
    """One email to send.

    Either its own content (``mime``: the RFC 5322 bytes Django's
    ``EmailMessage.message()`` produced, plus the envelope), or a ``job`` whose
    content it shares, with ``to_address`` and ``context`` for personalisation.

    ``due_at`` doubles as the claim lease: claiming a message pushes ``due_at``
    to the lease's end and stamps ``claim_token``. A worker that dies simply
    lets the lease run out, and the message is due again for anyone.
    """

    job = models.ForeignKey(
        MessageJob,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="messages",
    )
    priority = models.PositiveSmallIntegerField(
        _("priority"), choices=Priority.choices, default=Priority.MEDIUM
    )
    status = models.PositiveSmallIntegerField(
        _("status"), choices=MessageStatus.choices, default=MessageStatus.QUEUED
    )
    # When a pending message is due; NULL once it has left the queue (sent,
    # failed, suppressed, cancelled). The claim query is then just
    # "due_at <= now", which every database can answer from the partial
    # index below: a condition on bound parameters (status IN (%s, %s)) is
    # one SQLite cannot match to a partial index, and it would scan the table.
    due_at = models.DateTimeField(_("due"), null=True, blank=True, default=timezone.now)
    claim_token = models.CharField(max_length=32, null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    #: Attempts that ended in doubt (no reply after the end of DATA). A
    #: database default too, so raw INSERTs (expansion) need not name it.
    in_doubt = models.PositiveSmallIntegerField(_("in doubt"), default=0, db_default=0)
    to_address = models.CharField(
        _("to"),
        max_length=320,
        help_text=_("The job recipient, or the first envelope recipient."),
    )
    envelope_from = models.CharField(max_length=320, blank=True)
    envelope_to = models.JSONField(null=True, blank=True)
    subject = models.CharField(_("subject"), max_length=255, blank=True)
    mime = models.BinaryField(null=True, blank=True, editable=False)
    context = models.JSONField(null=True, blank=True)
    message_id = models.CharField(
        _("Message-ID"), max_length=255, null=True, blank=True
    )
    provider_id = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    # A single email whose relay refused some recipients with a 4xx while
    # accepting the others: those recipients are retried alone, in a new
    # message with the same bytes, linked here to the one that went out.
    retry_of = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="recipient_retries",
        verbose_name=_("retry of"),
    )

    #: The queue, as django-mailer's ``Message.objects`` was: mail still to
    #: send (queued, deferred, held). Sent, failed, suppressed and cancelled
    #: rows stay in the table for the admin and job reports, under
    #: ``all_objects``; code written for django-mailer (``Message.objects
    #: .count()``, ``.deferred()``, ...) keeps its meaning.
    objects = QueueManager()
    #: Every row. The default manager (admin, ``job.messages``, dumpdata), and
    #: the one the engine, claims and reports use.
    all_objects = MessageQuerySet.as_manager()

    class Meta:
        verbose_name = _("message")
        default_manager_name = "all_objects"
        constraints = [
            # Backs resumable expansion: a rerun after kill -9 can never
            # queue a second email to the same recipient of a job.
            models.UniqueConstraint(
                fields=["job", "to_address"],
                condition=Q(job__isnull=False),
                name="mailer_one_message_per_job_recipient",
            ),
        ]
        indexes = [
            # The claim query: pending rows only (due_at is NULL otherwise), in
            # send order. Sent and failed rows never enter this index, so it
            # stays small however long the history grows.
            models.Index(
                fields=["priority", "due_at", "id"],
                condition=Q(due_at__isnull=False),
                name="mailer_message_claim",
            ),
            # Partial indexes: only rows that have the value take space, which
            # keeps a queued job message under 300 bytes in all.
            models.Index(
                fields=["claim_token"],
                condition=Q(claim_token__isnull=False),
                name="mailer_message_claim_token",
            ),
            models.Index(
                fields=["message_id"],
                condition=Q(message_id__isnull=False),
                name="mailer_message_message_id",
            ),
            # Rows that still hold a body: pending and recently sent single
            # mail. Dropping sent bodies after their retention
            # (``retention.purge_sent_bodies``) reads only these.
            models.Index(
                fields=["status"],
                condition=Q(mime__isnull=False),
                name="mailer_message_with_body",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.subject or self.job_id} -> {self.to_address}"

    # -- django-mailer's instance API --------------------------------------------

    @property
    def email(self):
        """The Django ``EmailMessage`` this row sends (django-mailer's
        ``Message.email``), rebuilt from the stored bytes; ``None`` for job
        mail, whose content is the job's, rendered per reader when sent.
        Assigning an ``EmailMessage`` replaces the content and envelope
        (checked like mail entering the queue; raises ``InvalidEmail``)."""
        from mailer.legacy.api import email_of

        return email_of(self)

    @email.setter
    def email(self, email_message) -> None:
        from mailer.legacy.api import set_email

        set_email(self, email_message)

    @property
    def to_addresses(self) -> list[str]:
        """django-mailer's name: the envelope recipients."""
        return list(self.envelope_to or [self.to_address])

    def defer(self) -> None:
        """django-mailer's ``Message.defer()``: hold this message until
        ``retry_deferred`` (what django-mailer's error handlers call)."""
        from mailer.legacy.api import hold

        hold(self)


class MessageLog(models.Model):
    """One row per attempt (or per skip). Never holds a body by default."""

    message_pk = models.BigIntegerField(_("message"), null=True, db_index=True)
    # No index of its own: ``mailer_log_job_report`` starts with ``job``, so it
    # serves every lookup by job (and SET NULL when a job is deleted); a
    # second index would be one more page written with every outcome.
    job = models.ForeignKey(
        MessageJob,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
    )
    recipient = models.CharField(_("recipient"), max_length=320, db_index=True)
    subject = models.CharField(_("subject"), max_length=255, blank=True)
    result = models.PositiveSmallIntegerField(_("result"), choices=LogResult.choices)
    smtp_code = models.PositiveSmallIntegerField(_("SMTP code"), null=True)
    reply = models.TextField(_("reply"), blank=True)
    attempt = models.PositiveSmallIntegerField(_("attempt"), default=0)
    message_id = models.CharField(_("Message-ID"), max_length=255, blank=True)
    created_at = models.DateTimeField(_("when"), default=timezone.now, db_index=True)

    objects = MessageLogManager()

    class Meta:
        verbose_name = _("message log")
        ordering = ["-created_at", "-id"]
        indexes = [
            # The job report (mailer/jobs/report.py): sends per minute, failures
            # and skip reasons of one job, read from the index alone.
            models.Index(
                fields=["job", "result", "created_at"], name="mailer_log_job_report"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_result_display()}: {self.recipient}"


class SuppressionReason(models.TextChoices):
    """Why an address is on the don't-send list (``DontSendEntry``)."""

    UNSUBSCRIBED = "unsubscribed", _("unsubscribed")
    BOUNCED = "bounced", _("bounced")
    COMPLAINED = "complained", _("complained")
    MANUAL = "manual", _("manual")


class DontSendEntry(models.Model):
    """An address we must not mail. Stored lower-cased (see ``normalize``)."""

    address = models.CharField(_("address"), max_length=320, unique=True)
    reason = models.CharField(
        _("reason"),
        max_length=12,
        choices=SuppressionReason.choices,
        default=SuppressionReason.MANUAL,
    )
    note = models.TextField(_("note"), blank=True)
    created_at = models.DateTimeField(_("when"), default=timezone.now)

    objects = DontSendEntryManager()

    class Meta:
        verbose_name = _("don't-send entry")
        verbose_name_plural = _("don't-send list")
        ordering = ["address"]

    def __str__(self) -> str:
        return self.address

    def save(self, *args, **kwargs) -> None:
        from mailer.addresses import normalize

        self.address = normalize(self.address)
        super().save(*args, **kwargs)


class RateWindow(models.Model):
    """How many messages went out in one window of one rate limit.

    One row per (scope, window start): ``scope`` is ``"global:second"``,
    ``"global:day"``, ``"domain:gmail.com"``, ... Every worker on every host
    takes a slot with one conditional UPDATE (``count < cap``), so the caps
    hold for all of them together (see ``mailer.sending.quotas``). Old rows
    are deleted as workers go.
    """

    scope = models.CharField(max_length=200)
    window_start = models.DateTimeField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name = _("rate window")
        constraints = [
            models.UniqueConstraint(
                fields=["scope", "window_start"], name="mailer_rate_window_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.scope} {self.window_start:%Y-%m-%d %H:%M:%S}: {self.count}"


class RelayPause(models.Model):
    """The relay's own temporary trouble (disk full, 421, refused connections),
    shared by every worker: no worker sends before ``paused_until``, and each
    new bout of trouble doubles the pause (see ``mailer.sending.relaypause``).
    """

    relay = models.CharField(max_length=300, unique=True)
    paused_until = models.DateTimeField()
    failures = models.PositiveIntegerField(default=0)
    reason = models.TextField(blank=True)

    class Meta:
        verbose_name = _("relay pause")

    def __str__(self) -> str:
        return f"{self.relay} paused until {self.paused_until}"


class WorkerState(models.Model):
    """A few named facts the workers share across processes and hosts.

    Two kinds of row, each a handful in all (see ``mailer/worker/``):

    - ``task:send`` / ``task:expand``: a task of that kind is waiting in the
      site's task backend until ``until`` (a short lease), so queuing more
      mail meanwhile enqueues no second one;
    - ``run:last``: the outcome of the last send run (``value``: when, error,
      relay host and port), read by ``mailer_status`` for health checks.
    """

    key = models.CharField(max_length=40, primary_key=True)
    until = models.DateTimeField(null=True, blank=True)
    value = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("worker state")

    def __str__(self) -> str:
        return self.key
