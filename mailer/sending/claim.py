"""Claiming batches of due messages safely across processes and hosts.

A claim stamps ``claim_token`` (unique per batch) and pushes ``due_at`` to the
end of the lease. The claim rule is therefore the plain "due" filter: a claimed
message is not due until its lease expires, and a worker that died (kill -9,
power cut) needs no cleanup: its messages become due again by themselves.

Every write a worker makes afterwards (sent, deferred, released) is guarded by
its ``claim_token``, so a worker that overran its lease cannot clobber the
state written by the worker that took the message over.

How the claim is made atomic depends on the database:

- PostgreSQL (and any backend with ``SKIP LOCKED``): ``SELECT ... FOR UPDATE
  SKIP LOCKED`` inside a transaction, then one UPDATE. Concurrent workers skip
  each other's locked rows instead of waiting on them or taking them twice.
- SQLite: one ``UPDATE ... WHERE id IN (SELECT ... LIMIT n)`` statement.
  SQLite runs a write statement under its database-wide write lock, so the
  subquery and the update cannot interleave with another worker's. (A
  SELECT-then-UPDATE transaction would start as a reader and could fail with
  "database is locked" when upgrading to a writer.)

Every time here is the database's (``mailer.dbclock``): a lease ends one
``MAILER_LEASE_SECONDS`` after the database's now, and "due" means due by the
database's now, so workers whose clocks disagree still agree on the owner.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.db import connections, router, transaction

from mailer.conf import conf
from mailer.dbclock import DbNow
from mailer.models import Message

__all__ = ["claim_batch", "release", "renew"]


def new_token() -> str:
    return uuid.uuid4().hex


def claim_batch(size: int, *, now: datetime | None = None) -> tuple[str, list[int]]:
    """Claim up to ``size`` due messages; return the claim token and the ids.

    :param size: most messages to claim (``int``, at least 1).
    :param now: a test's fixed time (aware ``datetime`` when ``USE_TZ``),
        replacing the database's clock when given.
    :returns: ``(token, ids)``: the claim's token (32 hex digits) and the
        claimed messages' ids, highest priority first (``[]`` when nothing is
        due). Each claimed message is due again one ``MAILER_LEASE_SECONDS``
        (float seconds) after the database's now unless the claim renews,
        releases or records it.
    :raises django.db.DatabaseError: the database failed; nothing is claimed
        (the claim is one statement or one transaction).

    Row locking follows Django's ``select_for_update(skip_locked=True)``
    (https://docs.djangoproject.com/en/stable/ref/models/querysets/#select-for-update).
    """
    token = new_token()
    lease = timedelta(seconds=conf.MAILER_LEASE_SECONDS)
    lease_end = now + lease if now else DbNow(lease)
    db = router.db_for_write(Message)
    due = Message.all_objects.using(db).due(now)
    if connections[db].features.has_select_for_update_skip_locked:
        # A plain probe first: an empty queue (cron's usual case, every
        # minute) then costs one indexed query instead of a transaction.
        if not due.exists():
            return token, []
        with transaction.atomic(using=db):
            ids = list(
                due.select_for_update(skip_locked=True).values_list("id", flat=True)[
                    :size
                ]
            )
            if ids:
                Message.all_objects.using(db).filter(id__in=ids).update(
                    claim_token=token, due_at=lease_end
                )
        return token, ids
    claimed = (
        Message.all_objects.using(db)
        .filter(id__in=due.values("id")[:size])
        .update(claim_token=token, due_at=lease_end)
    )
    if not claimed:
        return token, []
    ids = list(
        Message.all_objects.using(db)
        .filter(claim_token=token)
        .order_by("priority", "id")
        .values_list("id", flat=True)
    )
    return token, ids


def renew(token: str, ids: list[int], *, now: datetime | None = None) -> set[int]:
    """Push the lease of ``ids`` to a full lease from now; return the ids this
    claim still holds (a ``set[int]``).

    ``token`` is the claim's token from :func:`claim_batch`; the lease is
    ``MAILER_LEASE_SECONDS`` (float seconds) from the database's now, or from
    ``now`` (a test's fixed time).

    A batch can take longer than its lease (a slow server, a throttle): its
    tail would then be due again and a second worker, a cron run started a
    minute later, would send it while this one still does. The engine renews
    before that happens. A message missing from the answer was taken over
    (the renewal came too late), cancelled, or released: not ours to send.
    """
    held = Message.all_objects.pending().filter(claim_token=token, id__in=ids)
    lease = timedelta(seconds=conf.MAILER_LEASE_SECONDS)
    renewed = held.update(due_at=now + lease if now else DbNow(lease))
    if renewed == len(ids):
        return set(ids)
    return set(held.values_list("id", flat=True))


def release(token: str, ids: list[int] | None = None) -> int:
    """Give claimed messages back, due at once, without burning an attempt.

    ``ids`` narrows the release to those messages of claim ``token``
    (default: all of them). Only messages still pending under this token
    change, so a worker whose lease ran out gives back nothing of the new
    owner's. Returns how many were released (``int``).
    """
    qs = Message.all_objects.pending().filter(claim_token=token)
    if ids is not None:
        qs = qs.filter(id__in=ids)
    return qs.update(claim_token=None, due_at=DbNow())
