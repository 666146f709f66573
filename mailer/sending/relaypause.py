"""The relay's own trouble pauses every worker, with an exponential backoff.

When the relay itself cannot take mail for a while (its disk is full: 452
4.3.1; 421; a refused or dropped connection; see
``mailer.sending.outcomes.relay_trouble``), trying message after message only burns
each message's attempts and hammers a relay that is already struggling. So
the worker that meets the trouble gives its claims back (no attempt burned),
records a pause in the database (``mailer.models.RelayPause``, one row per
relay) and stops; every worker on every host checks the pause before it
claims mail. Each bout in a row doubles the pause, from
``MAILER_RELAY_BACKOFF_SECONDS`` up to ``MAILER_RELAY_BACKOFF_MAX_SECONDS``;
the first message the relay accepts again ends the series. All times are on
the database's clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import router, transaction

from mailer.conf import conf
from mailer.dbclock import database_now
from mailer.models import RelayPause
from mailer.sending.smtp import sending_backend_path

__all__ = ["Paused", "clear", "current", "pause", "pause_length"]


@dataclass(frozen=True)
class Paused:
    """The relay is paused until ``until`` (database clock), for ``seconds``
    more, after ``failures`` bouts in a row of ``reason``."""

    until: datetime
    seconds: float
    failures: int
    reason: str

    def __str__(self) -> str:
        return f"{self.short()}: {self.reason}"

    def short(self) -> str:
        """The pause without its reason (for a line that gives it already)."""
        return (
            f"relay paused for {self.seconds:.0f} s (until {self.until:%H:%M:%S} "
            f"UTC, trouble #{self.failures})"
        )


def relay_key() -> str:
    """Which relay a pause is about: the sending backend and its host:port,
    so a site that switches relays is not held back by the old one's
    trouble."""
    from django.conf import settings

    from mailer.sending.smtp import mailers_configured

    host, port = "", ""
    if mailers_configured():
        options = settings.MAILERS.get(conf.MAILER_SEND_USING, {}).get("OPTIONS", {})
        host, port = options.get("host", ""), options.get("port", "")
    else:
        host = getattr(settings, "EMAIL_HOST", "")
        port = getattr(settings, "EMAIL_PORT", "")
    return f"{sending_backend_path()} {host}:{port}"[:300]


def pause_length(failures: int) -> timedelta:
    """The pause after ``failures`` bouts of trouble in a row (1, 2, ...):
    ``MAILER_RELAY_BACKOFF_SECONDS`` doubled each time, capped."""
    delay = conf.MAILER_RELAY_BACKOFF_SECONDS * 2.0 ** min(max(failures - 1, 0), 60)
    return timedelta(seconds=min(delay, conf.MAILER_RELAY_BACKOFF_MAX_SECONDS))


def current(*, using: str | None = None) -> Paused | None:
    """The pause in force for the configured relay, or None. One indexed
    query."""
    db = using or router.db_for_write(RelayPause)
    row = (
        RelayPause.objects.using(db)
        .filter(relay=relay_key())
        .values_list("paused_until", "failures", "reason")
        .first()
    )
    if row is None or row[1] == 0:
        return None
    now = database_now(db)
    until, failures, reason = row
    if until <= now:
        return None
    return Paused(until, (until - now).total_seconds(), failures, reason)


def pause(reason: str, *, using: str | None = None) -> Paused | None:
    """Record one more bout of relay trouble; return the pause now in force
    (None when ``MAILER_RELAY_BACKOFF_SECONDS`` is 0: no pause).

    Two workers meeting the same trouble at once count it once: a bout that
    starts while a pause is in force only keeps that pause.
    """
    if conf.MAILER_RELAY_BACKOFF_SECONDS <= 0:
        return None
    db = using or router.db_for_write(RelayPause)
    key = relay_key()
    now = database_now(db)
    with transaction.atomic(using=db):
        row, _created = RelayPause.objects.using(db).get_or_create(
            relay=key, defaults={"paused_until": now, "failures": 0}
        )
        row = RelayPause.objects.using(db).select_for_update().get(pk=row.pk)
        if row.failures and row.paused_until > now:
            return Paused(
                row.paused_until,
                (row.paused_until - now).total_seconds(),
                row.failures,
                row.reason,
            )
        failures = row.failures + 1
        until = now + pause_length(failures)
        RelayPause.objects.using(db).filter(pk=row.pk).update(
            failures=failures, paused_until=until, reason=reason[:2000]
        )
    return Paused(until, (until - now).total_seconds(), failures, reason)


def clear(*, using: str | None = None) -> bool:
    """The relay took a message: end the series of pauses. Returns whether
    there was one (the engine calls this once per run, after its first
    accepted message, so a healthy relay costs one UPDATE a run)."""
    db = using or router.db_for_write(RelayPause)
    return bool(
        RelayPause.objects.using(db)
        .filter(relay=relay_key(), failures__gt=0)
        .update(failures=0, reason="")
    )
