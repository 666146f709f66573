"""Provider limits: global rate caps shared by every worker on every host, and
pacing per recipient domain.

Relays and ESPs quote quotas (Amazon SES: N recipients per second and M per
day; Gmail: per day), and receiving domains throttle senders that go too
fast. A per-process throttle cannot honour them once two workers run, so the
counts live in the database (``mailer.models.RateWindow``): one row per
(scope, window start), e.g. ``("global:second", 12:00:05)`` or
``("domain:gmail.com", 12:00)``. A worker takes its slots for one message
with one conditional UPDATE per window::

    UPDATE mailer_ratewindow SET count = count + w
    WHERE scope = ... AND window_start = ... AND (count + w <= cap OR count = 0)

all windows of the message inside one transaction, in a fixed order (so two
workers never wait on each other in a cycle). The row lock (PostgreSQL) or the
database write lock (SQLite) makes the check and the increment one step, so
the caps hold however many workers run. Window starts come from the
database's clock, so workers whose clocks disagree still share each window.

A full window never fails a message and burns no attempt: the caller either
waits for a short window to end (a second) or gives the mail back, due when
the window ends (see :class:`Gate`).

Settings (``mailer.conf``): ``MAILER_RATE_LIMITS`` (``{"second": 14, "day":
50000}``, counted in recipients, as SES counts), ``MAILER_DOMAIN_RATE``
(``{"default": 600, "gmail.com": 300}`` recipients per minute to one domain),
``MAILER_RATE_WAIT_SECONDS``.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from django.db import IntegrityError, connections, router, transaction

from mailer.conf import conf
from mailer.dbclock import database_now_utc, for_field
from mailer.models import Message, RateWindow

__all__ = [
    "UNITS",
    "ConfigurationError",
    "Gate",
    "Wait",
    "acquire",
    "defer_claimed",
    "window_start",
]

#: Window lengths in seconds, by the keys ``MAILER_RATE_LIMITS`` takes.
UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}

#: Per-domain pacing counts in windows of this many seconds.
DOMAIN_WINDOW = 60

#: Rows of windows that ended longer ago than this are deleted.
KEEP_WINDOWS = timedelta(days=2)

#: How often (seconds) one process deletes old rows.
PURGE_EVERY = 300.0

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class ConfigurationError(ValueError):
    """A rate setting that cannot work (unknown unit, cap below 1)."""


@dataclass(frozen=True)
class Wait:
    """A full window: no more mail to ``scope`` before ``until``.

    ``until`` is on the database's clock; ``seconds`` is how long that is
    from the moment the window was found full.
    """

    scope: str
    until: datetime
    seconds: float
    #: The window's cap and length (seconds), to spread deferred mail over
    #: the windows after it.
    cap: int = 0
    window: int = 0

    @property
    def is_global(self) -> bool:
        """True for a global cap (every message waits), False for one
        recipient domain (other mail may go)."""
        return self.scope.startswith("global:")


@dataclass(frozen=True)
class _Window:
    scope: str
    seconds: int
    cap: int
    weight: int


def domain_of(address: str) -> str:
    """The lower-cased domain of an envelope address ("" when it has none)."""
    return address.rpartition("@")[2].strip().rstrip(">").lower()


def configured_windows(recipients: Sequence[str]) -> list[_Window]:
    """The rate windows one message to ``recipients`` counts against, in
    the order their slots are taken. Raises :class:`ConfigurationError` for
    an unknown unit or a cap below 1."""
    windows = []
    for unit, cap in sorted(conf.MAILER_RATE_LIMITS.items(), key=lambda i: str(i[0])):
        if unit not in UNITS:
            raise ConfigurationError(
                f"MAILER_RATE_LIMITS has unknown unit {unit!r}; use {', '.join(UNITS)}"
            )
        if int(cap) < 1:
            raise ConfigurationError(f"MAILER_RATE_LIMITS[{unit!r}] must be >= 1")
        windows.append(_Window(f"global:{unit}", UNITS[unit], int(cap), 0))
    pacing = conf.MAILER_DOMAIN_RATE
    if pacing:
        per_domain = Counter(domain_of(address) for address in recipients)
        for domain in sorted(per_domain):
            cap = pacing.get(domain, pacing.get("default"))
            if cap is None:
                continue
            if int(cap) < 1:
                raise ConfigurationError(f"MAILER_DOMAIN_RATE[{domain!r}] must be >= 1")
            windows.append(
                _Window(f"domain:{domain}", DOMAIN_WINDOW, int(cap), per_domain[domain])
            )
    count = len(recipients)
    return [
        w if w.weight else _Window(w.scope, w.seconds, w.cap, count) for w in windows
    ]


def window_start(now: datetime, seconds: int) -> datetime:
    """Start of the ``seconds``-long window that holds ``now`` (windows are
    aligned on the Unix epoch, UTC: days start at 00:00 UTC)."""
    elapsed = (now - _EPOCH) // timedelta(seconds=seconds)
    return _EPOCH + timedelta(seconds=elapsed * seconds)


class _Full(Exception):
    def __init__(self, window: _Window, start: datetime) -> None:
        self.window = window
        self.start = start


def acquire(recipients: Sequence[str], *, using: str | None = None) -> Wait | None:
    """Take the slots one message to ``recipients`` needs in every configured
    window, all or none.

    Returns ``None`` when the message may go now (its slots are taken), or a
    :class:`Wait` naming the first full window (nothing is taken). Costs no
    query when no limit is configured, one UPDATE per window otherwise (in
    one transaction when there are several). A message with more recipients
    than a cap goes alone in an otherwise empty window, so it is never stuck.

    :raises ConfigurationError: ``MAILER_RATE_LIMITS`` or
        ``MAILER_DOMAIN_RATE`` names an unknown unit or a cap below 1
        (``manage.py check`` reports the same).
    """
    windows = configured_windows(recipients)
    if not windows:
        return None
    db = using or router.db_for_write(RateWindow)
    now = _clock(db).now()
    _purge_now_and_then(db, now)
    statements = _statements(db)
    try:
        if len(windows) == 1:
            # One statement is atomic by itself: no transaction to pay for.
            _take_or_raise(statements, windows[0], now)
        else:
            with transaction.atomic(using=db):
                for window in windows:
                    _take_or_raise(statements, window, now)
    except _Full as full:
        until = full.start + timedelta(seconds=full.window.seconds)
        return Wait(
            full.window.scope,
            until,
            (until - now).total_seconds(),
            full.window.cap,
            full.window.seconds,
        )
    return None


def _take_or_raise(statements: _Statements, window: _Window, now: datetime) -> None:
    start = window_start(now, window.seconds)
    if not statements.take(window, start):
        raise _Full(window, start)


class _Statements:
    """The two statements a slot needs, composed once per database from the
    model's metadata. Raw SQL for speed, as in ``mailer.sending.records``: the ORM's
    ``filter().update()`` costs about 1 ms of Python per call, more than
    sending a message to a nearby relay."""

    def __init__(self, db: str) -> None:
        self.db = db
        connection = connections[db]
        quote = connection.ops.quote_name
        adapt = connection.ops.adapt_datetimefield_value
        # Windows are computed in UTC; stored as Django stores the field
        # (naive local time with USE_TZ = False).
        self.adapt = lambda value: adapt(for_field(value))
        table = quote(RateWindow._meta.db_table)
        scope, start, count = (
            quote(RateWindow._meta.get_field(name).column)
            for name in ("scope", "window_start", "count")
        )
        self.update_sql = (
            f"UPDATE {table} SET {count} = {count} + %s "
            f"WHERE {scope} = %s AND {start} = %s "
            f"AND ({count} + %s <= %s OR {count} = 0)"
        )
        self.insert_sql = (
            f"INSERT INTO {table} ({scope}, {start}, {count}) VALUES (%s, %s, %s)"
        )

    def take(self, window: _Window, start: datetime) -> bool:
        when = self.adapt(start)
        update = [window.weight, window.scope, when, window.weight, window.cap]
        with connections[self.db].cursor() as cursor:
            cursor.execute(self.update_sql, update)
            if cursor.rowcount:
                return True
        # The window's first message (or a full window). The row is created
        # with this message's count; a racing worker that created it first
        # makes the INSERT fail, and the UPDATE then decides against its
        # count. The savepoint keeps a failed INSERT from spoiling an
        # enclosing transaction.
        try:
            with transaction.atomic(using=self.db):
                with connections[self.db].cursor() as cursor:
                    cursor.execute(self.insert_sql, [window.scope, when, window.weight])
            return True
        except IntegrityError:
            with connections[self.db].cursor() as cursor:
                cursor.execute(self.update_sql, update)
                return bool(cursor.rowcount)


_statement_cache: dict[str, _Statements] = {}


def _statements(db: str) -> _Statements:
    statements = _statement_cache.get(db)
    if statements is None:
        statements = _statement_cache[db] = _Statements(db)
    return statements


class _DatabaseClock:
    """The database's time without a query per message: read once, then
    carried forward on this process's monotonic clock, and read again every
    ``RESYNC_SECONDS``. The two clocks tick at the same rate to within parts
    per million, so the error stays far below a millisecond, while the
    worker's own wall clock (which may be off by minutes, or stepped) plays
    no part."""

    RESYNC_SECONDS = 30.0

    def __init__(self, db: str) -> None:
        self.db = db
        self.synced_at = float("-inf")
        self.base = _EPOCH

    def now(self) -> datetime:
        elapsed = time.monotonic() - self.synced_at
        if elapsed >= self.RESYNC_SECONDS or elapsed < 0:
            self.base = database_now_utc(self.db)
            self.synced_at = time.monotonic()
            return self.base
        return self.base + timedelta(seconds=elapsed)


_clocks: dict[str, _DatabaseClock] = {}


def _clock(db: str) -> _DatabaseClock:
    clock = _clocks.get(db)
    if clock is None:
        clock = _clocks[db] = _DatabaseClock(db)
    return clock


_last_purge = {"at": float("-inf")}


def _purge_now_and_then(db: str, now: datetime) -> None:
    if time.monotonic() - _last_purge["at"] < PURGE_EVERY:
        return
    _last_purge["at"] = time.monotonic()
    cutoff = now - KEEP_WINDOWS
    RateWindow.objects.using(db).filter(window_start__lt=for_field(cutoff)).delete()


def defer_claimed(token: str, ids: Sequence[int], until: datetime) -> int:
    """Give claimed messages back, due at ``until``, without burning an
    attempt or writing a log row (a full window is not an attempt). Returns
    how many this claim still held."""
    return (
        Message.all_objects.pending()
        .filter(claim_token=token, id__in=list(ids))
        .update(claim_token=None, due_at=for_field(until))
    )


class Gate:
    """What the engine asks before each message: may it go now?

    One per run. A full *global* window shorter than
    ``MAILER_RATE_WAIT_SECONDS`` (a second, a minute with a short wait set)
    is waited out here, asleep, then tried again; a longer one comes back as
    a :class:`Wait` and the engine gives the rest of its batch back, due when
    the window ends, and ends the run. A full *domain* window comes back at
    once: the engine defers that one message and goes on with the next.
    Domains found full are remembered until their window ends, so the rest
    of a batch to gmail.com costs no query.
    """

    def __init__(
        self,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        writing: Callable[[], contextlib.AbstractContextManager] = (
            contextlib.nullcontext
        ),
    ) -> None:
        self.sleep = sleep
        self.clock = clock
        #: Context around each slot's writes (the pool's turn to write on
        #: SQLite, ``mailer.sending.pool``); never held while asleep.
        self.writing = writing
        self.waits = 0
        self.waited_seconds = 0.0
        self._full: dict[str, tuple[float, Wait]] = {}
        self._deferred: Counter[str] = Counter()

    def before_send(
        self,
        recipients: Sequence[str],
        *,
        deadline: float | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> Wait | None:
        """``None``: send now (slots taken). A :class:`Wait`: do not send
        this message now; the engine defers it (domain) or ends the run
        (global). Sleeps at most ``MAILER_RATE_WAIT_SECONDS`` per wait and
        never past ``deadline`` (a ``time.monotonic()`` value)."""
        if not (conf.MAILER_RATE_LIMITS or conf.MAILER_DOMAIN_RATE):
            return None  # no limit configured: nothing to take, no query
        known = self._known_full(recipients)
        if known is not None:
            return known
        # Bounded: each pass either returns or sleeps until a window ends.
        for _ in range(1000):
            with self.writing():
                wait = acquire(recipients)
            if wait is None:
                return None
            if not wait.is_global:
                self._full[wait.scope] = (self.clock() + wait.seconds, wait)
                self._deferred[wait.scope] = 0
                return self._spread(wait)
            pause = wait.seconds
            if deadline is not None:
                pause = min(pause, deadline - self.clock())
            if (
                wait.seconds > conf.MAILER_RATE_WAIT_SECONDS
                or pause <= 0
                or should_stop()
            ):
                return wait
            self.waits += 1
            self.waited_seconds += pause
            # A hair past the window's end, so the retry lands in the next one.
            self.sleep(pause + 0.002)
        return wait

    def _known_full(self, recipients: Sequence[str]) -> Wait | None:
        if not self._full:
            return None
        now = self.clock()
        for domain in {domain_of(a) for a in recipients}:
            entry = self._full.get(f"domain:{domain}")
            if entry is None:
                continue
            ends, wait = entry
            if now < ends:
                return self._spread(wait)
            del self._full[f"domain:{domain}"]
        return None

    def _spread(self, wait: Wait) -> Wait:
        """The n-th message this run defers for a full domain window is due
        in the window ``n // cap`` after the next one, not all of them at
        the next window's start: 100,000 readers at gmail.com, paced at 300
        a minute, are then each deferred about once instead of being claimed
        and deferred again every minute."""
        n = self._deferred[wait.scope]
        self._deferred[wait.scope] = n + 1
        if not wait.cap or n < wait.cap:
            return wait
        later = timedelta(seconds=wait.window * (n // wait.cap))
        return Wait(
            wait.scope,
            wait.until + later,
            wait.seconds + later.total_seconds(),
            wait.cap,
            wait.window,
        )
