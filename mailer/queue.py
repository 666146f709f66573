"""The only way single emails enter the queue.

Everything is checked at the door, before anything is written: an invalid
address, a line break in a header, a message over ``MAILER_MAX_MESSAGE_BYTES``
raise an :class:`~mailer.exceptions.InvalidEmail` naming the problem, and
nothing is queued. What is stored is exactly what Django would have sent: the
bytes of ``EmailMessage.message()`` and the envelope (so Bcc survives too).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from datetime import timezone as dt_timezone

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import router, transaction
from django.utils import timezone

from mailer.addresses import envelope_address
from mailer.conf import conf
from mailer.dbclock import database_now
from mailer.door import check_headers, check_size
from mailer.exceptions import InvalidEmail
from mailer.models import Message, MessageStatus, Priority
from mailer.sending.message import serialize

__all__ = [
    "HELD_UNTIL",
    "build",
    "enqueue",
    "enqueue_many",
    "held_until",
    "parse_priority",
]

#: django-mailer's priority names. "deferred" queues the message held: it is
#: sent only after ``manage.py retry_deferred`` releases it.
PRIORITY_NAMES = {
    "high": Priority.HIGH,
    "medium": Priority.MEDIUM,
    "low": Priority.LOW,
    "deferred": Priority.MEDIUM,
}

#: django-mailer's ``PRIORITY_DEFERRED`` ("4"), as a number.
DJANGO_MAILER_DEFERRED = 4

#: A held message's due time: far enough never to come due by itself. Aware,
#: for ``USE_TZ = True``; :func:`held_until` gives the form the project uses.
HELD_UNTIL = datetime(9999, 1, 1, tzinfo=dt_timezone.utc)


def held_until() -> datetime:
    """A held message's due time, aware or naive as ``USE_TZ`` says.

    With ``USE_TZ = False`` Django refuses an aware datetime on SQLite and
    MySQL (``ValueError``: "backend does not support timezone-aware
    datetimes"), so the naive ``9999-01-01`` is stored: it is read in
    ``TIME_ZONE`` and is still centuries away.
    """
    if settings.USE_TZ:
        return HELD_UNTIL
    return HELD_UNTIL.replace(tzinfo=None)


def parse_priority(priority: str | int | None, default: str) -> tuple[Priority, bool]:
    """Return the priority and whether the message is held ("deferred")."""
    if priority is None:
        priority = default
    given = priority
    if isinstance(priority, str):
        key = priority.strip().lower()
        if key in PRIORITY_NAMES:
            return PRIORITY_NAMES[key], key == "deferred"
        if key.isdigit():
            priority = int(key)
    # True == 1 in Python; a bool is a mistake, not the high priority.
    if isinstance(priority, int) and not isinstance(priority, bool):
        # django-mailer's PRIORITY_HIGH/MEDIUM/LOW/DEFERRED constants are "1"
        # to "4"; "4" (deferred) has no level of its own, it holds the message.
        if priority == DJANGO_MAILER_DEFERRED:
            return PRIORITY_NAMES["deferred"], True
        if priority in Priority.values:
            return Priority(priority), False
    # The value as given, not as converted: "Unknown priority '5'".
    raise ValueError(
        f"Unknown priority {given!r}: use 'high', 'medium', 'low' or 'deferred'"
    )


def _check_headers(email_message: EmailMessage) -> None:
    check_headers(
        [
            ("Subject", email_message.subject),
            ("From", email_message.from_email),
            *((str(k), v) for k, v in email_message.extra_headers.items()),
        ]
    )


def build(email_message: EmailMessage, *, priority: str | int | None = None) -> Message:
    """Check ``email_message`` and return an unsaved ``Message`` for it.

    The email is serialized by Django (``EmailMessage.message()``, RFC 5322
    bytes); envelope addresses follow RFC 5321.

    :raises mailer.exceptions.InvalidEmail: no recipients, or the email
        cannot be built.
    :raises mailer.exceptions.InvalidAddress: a recipient, the sender or a
        Reply-To is not a valid address.
    :raises mailer.exceptions.HeaderInjection: a header holds a line break.
    :raises mailer.exceptions.MessageTooLarge: over
        ``MAILER_MAX_MESSAGE_BYTES`` (bytes).
    :raises ValueError: an unknown ``priority``.
    """
    level, held = parse_priority(priority, conf.MAILER_DEFAULT_PRIORITY)
    _check_headers(email_message)
    recipients = [envelope_address(r) for r in email_message.recipients()]
    if not recipients:
        raise InvalidEmail("The email has no recipients (to, cc and bcc are empty)")
    envelope_from = envelope_address(email_message.from_email or _default_from())
    for address in [*email_message.reply_to]:
        envelope_address(address)
    try:
        data, message_id = serialize(email_message)
    except ValueError as error:
        raise InvalidEmail(f"The email cannot be built: {error}") from error
    check_size(len(data))
    return Message(
        priority=level,
        status=MessageStatus.DEFERRED if held else MessageStatus.QUEUED,
        due_at=held_until() if held else timezone.now(),
        to_address=recipients[0],
        envelope_from=envelope_from,
        envelope_to=recipients,
        subject=" ".join(str(email_message.subject).split())[:255],
        mime=data,
        message_id=message_id[:255] or None,
    )


def _default_from() -> str:
    from django.conf import settings

    return settings.DEFAULT_FROM_EMAIL


def enqueue(
    email_message: EmailMessage, *, priority: str | int | None = None
) -> Message:
    """Queue one email; return its saved ``Message``. Raises as
    :func:`build`; a worker is woken when the transaction commits."""
    message = build(email_message, priority=priority)
    using = router.db_for_write(Message)
    # One transaction for the row and its NOTIFY (no savepoint inside a
    # caller's transaction): the wake-up is sent if and only if the mail is
    # committed.
    with transaction.atomic(using=using, savepoint=False):
        _due_by_the_database([message], using)
        message.save(force_insert=True, using=using)
        _wake(message)
    return message


def enqueue_many(
    email_messages: Iterable[EmailMessage], *, priority: str | int | None = None
) -> list[Message]:
    """Queue several emails, all or none: every one is checked before any is
    written. Returns the saved ``Message`` rows, in order. Raises as
    :func:`build`."""
    messages = [build(m, priority=priority) for m in email_messages]
    with transaction.atomic():
        _due_by_the_database(messages, router.db_for_write(Message))
        # MAILER_MESSAGES_BATCH_SIZE: django-mailer's cap on rows per INSERT.
        saved = Message.all_objects.bulk_create(
            messages, batch_size=conf.MAILER_MESSAGES_BATCH_SIZE
        )
        _wake(*saved)
    return saved


def _due_by_the_database(messages: list[Message], using: str) -> None:
    """Make mail that is due now due at the database's now
    (``mailer.dbclock``), the clock every worker compares with: ``build``
    stamps this process's, and a web host whose clock runs ahead of the
    database would hold its mail back by as much (a password reset a minute
    late). One query, only when some of ``messages`` are due now."""
    if any(m.status == MessageStatus.QUEUED for m in messages):
        now = database_now(using)
        for message in messages:
            if message.status == MessageStatus.QUEUED:
                message.due_at = now


def _wake(*messages: Message) -> None:
    """Wake a worker when this transaction commits (mailer/worker/wakeup.py);
    held mail waits for ``retry_deferred`` and wakes nobody."""
    if any(m.status == MessageStatus.QUEUED for m in messages):
        from mailer.worker.wakeup import SEND, announce

        announce(SEND, using=messages[0]._state.db)
