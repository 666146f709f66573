"""How long what the queue keeps stays there: the body of sent single mail.

A single email is stored as its finished bytes (``Message.mime``), which for
a password reset or a sign-in link are live credentials. Once the email is
sent, nothing needs them but a person looking into a fresh problem, so they
are dropped after ``MAILER_SENT_BODY_RETENTION_SECONDS``; the row (status,
subject, recipients, Message-ID) and its log stay for ``purge_mail_log``.
Job mail keeps no body: it is rebuilt from the job when sent.
"""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Exists, OuterRef
from django.utils import timezone

from mailer.conf import conf
from mailer.models import LogResult, Message, MessageLog, MessageStatus

__all__ = ["purge_sent_bodies"]


def purge_sent_bodies(*, seconds: float | None = None) -> int:
    """Drop the body of single mail sent more than ``seconds`` ago (default
    ``MAILER_SENT_BODY_RETENTION_SECONDS``); return how many were dropped.

    One UPDATE, over the partial index of rows that still have a body (queued,
    deferred, failed and recently sent single mail: a few rows, however long
    the history). The time of sending is the SENT log row's; a message whose
    log is already purged is older than any retention. Queued, deferred and
    failed mail keeps its body: it is still to be sent (or retried).

    Raises ``ValueError`` for a negative ``seconds``.
    """
    if seconds is None:
        seconds = conf.MAILER_SENT_BODY_RETENTION_SECONDS
    if seconds < 0:
        raise ValueError(f"The retention must be 0 seconds or more, not {seconds}")
    rows = Message.all_objects.filter(
        mime__isnull=False, status=MessageStatus.SENT, job__isnull=True
    )
    if seconds > 0:
        cutoff = timezone.now() - timedelta(seconds=seconds)
        recent = MessageLog.objects.filter(
            message_pk=OuterRef("pk"), result=LogResult.SENT, created_at__gt=cutoff
        )
        rows = rows.exclude(Exists(recent))
    return rows.update(mime=None)
