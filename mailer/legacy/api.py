"""django-mailer's public names, on top of our queue and engine.

Code written for django-mailer 2.3 imports these from where django-mailer had
them (``mailer.engine.send_all``, ``mailer.models.make_message``,
``Message.email``, ...); those modules re-export thin wrappers, and the
behaviour lives here, in one place. What differs from django-mailer, and why,
is in the README's "Switching from django-mailer".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from django.core.mail import EmailMessage

__all__ = [
    "apply_error_handler",
    "email_of",
    "get_priority",
    "hold",
    "log_results",
    "make_message",
    "send_all",
    "send_loop",
    "set_email",
]

logger = logging.getLogger("mailer.engine")

#: django-mailer's log result codes -> our ``LogResult`` values. Its
#: "failure" is an attempt that did not deliver: our deferred and failed.
_RESULT_CODES = {"1": (1,), "2": (4,), "3": (2, 3)}


def log_results(codes: Iterable[str | int]) -> list[int]:
    """Our ``LogResult`` values for django-mailer's result codes ("1"
    success, "2" don't send, "3" failure) or our own values (ints). Raises
    ``ValueError`` for anything else."""
    from mailer.models import LogResult

    results: list[int] = []
    for code in codes:
        if isinstance(code, str) and code in _RESULT_CODES:
            results.extend(_RESULT_CODES[code])
        elif isinstance(code, int) and code in LogResult.values:
            results.append(code)
        else:
            raise ValueError(
                f"Unknown log result {code!r}: use RESULT_SUCCESS, RESULT_DONT_SEND, "
                "RESULT_FAILURE or a LogResult"
            )
    return results


def get_priority(priority: str | int | None) -> int:
    """django-mailer's ``mailer.get_priority``: the ``PRIORITY_*`` value for
    ``priority`` (``None`` is medium; a name such as ``"high"`` or a number
    1-4, as int or str). Raises ``ValueError`` for anything else. Unlike
    django-mailer, names are not deprecated here: our API takes them."""
    from mailer.models import PRIORITY_MAPPING, PRIORITY_MEDIUM

    if priority is None:
        return PRIORITY_MEDIUM
    if isinstance(priority, str):
        key = priority.strip().lower()
        if key in PRIORITY_MAPPING:
            return PRIORITY_MAPPING[key]
        if key.isdigit():
            priority = int(key)
    if (
        isinstance(priority, int)
        and not isinstance(priority, bool)
        and priority in PRIORITY_MAPPING.values()
    ):
        return priority
    raise ValueError(f"Invalid priority {priority!r}")


# -- Message.email, make_message, defer -------------------------------------------


def email_of(message) -> EmailMessage | None:
    """The ``EmailMessage`` a single-mail row sends, rebuilt from its bytes
    (``None`` for job mail or a row without content)."""
    from mailer.sending.smtp import PreparedEmail

    if message.job_id is not None or message.mime is None:
        return None
    return PreparedEmail(
        bytes(message.mime), message.envelope_from, message.to_addresses
    )


def set_email(message, email_message: EmailMessage) -> None:
    """Replace ``message``'s content and envelope by ``email_message``'s,
    checked as at the queue's door (raises ``InvalidEmail``). Priority and
    held state stay as they are; save the message to store it."""
    from mailer.queue import build

    built = build(email_message, priority=message.priority or None)
    for field in (
        "to_address",
        "envelope_from",
        "envelope_to",
        "subject",
        "mime",
        "message_id",
    ):
        setattr(message, field, getattr(built, field))


def make_message(
    subject: str = "",
    body: str = "",
    from_email: str | None = None,
    to: list[str] | None = None,
    bcc: list[str] | None = None,
    attachments: list | None = None,
    headers: dict[str, str] | None = None,
    priority: str | int | None = None,
):
    """django-mailer's ``mailer.models.make_message`` (importable from
    there): an unsaved :class:`~mailer.models.Message`; ``save()`` queues
    it. ``to`` and ``bcc`` leave out addresses on the don't-send list (as
    django-mailer did); ``message.email`` may be replaced before saving.
    Raises :class:`~mailer.exceptions.InvalidEmail` for mail our queue
    would refuse."""
    from mailer.queue import build
    from mailer.suppression import is_suppressed

    def allowed(addresses: list[str] | None) -> list[str] | None:
        if addresses is None:
            return None
        kept = []
        for address in addresses:
            if is_suppressed(address):
                logger.info("skipping email to %s as on don't send list", address)
            else:
                kept.append(address)
        return kept

    def email(to: list[str] | None, bcc: list[str] | None) -> EmailMessage:
        return EmailMessage(
            subject=subject,
            body=body,
            from_email=from_email,
            to=to,
            bcc=bcc,
            attachments=attachments,
            headers=headers,
        )

    kept = email(allowed(to), allowed(bcc))
    if kept.recipients():
        return build(kept, priority=priority)
    # Every recipient is on the list. django-mailer saved such a message and
    # "sent" it to nobody; here it is stored as suppressed, never sent.
    from mailer.models import MessageStatus

    message = build(email(to, bcc), priority=priority)
    message.status = MessageStatus.SUPPRESSED
    message.due_at = None
    return message


def hold(message) -> None:
    """Hold ``message`` until ``retry_deferred`` (django-mailer's
    ``Message.defer()``)."""
    from mailer.models import MessageStatus
    from mailer.queue import HELD_UNTIL

    message.status = MessageStatus.DEFERRED
    message.due_at = HELD_UNTIL
    if message.pk is not None:
        type(message).all_objects.filter(pk=message.pk).update(
            status=MessageStatus.DEFERRED, due_at=HELD_UNTIL
        )


# -- send_all / send_loop ------------------------------------------------------------


def send_all(queryset: Any = None):
    """django-mailer's ``mailer.engine.send_all()``: send the mail that is
    due, once, within the ``MAILER_*`` limits; return our ``SendResult``
    (django-mailer returned nothing). Sends even with ``MAILER_PAUSE_SEND``,
    like django-mailer's (only its commands pause).

    ``queryset`` (django-mailer's admin "send selected" path) is not
    supported: a request never sends here, and any worker may hold the rows.
    Raises ``NotImplementedError`` when one is given.
    """
    if queryset is not None:
        raise NotImplementedError(
            "send_all(queryset) is not supported: make the messages due "
            "(Message.objects.filter(...).retry_deferred()) and let send_mail "
            "send them."
        )
    from mailer.sending.engine import send_queued

    return send_queued()


def send_loop(
    *,
    should_stop: Callable[[], bool] = lambda: False,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """django-mailer's ``mailer.engine.send_loop()``: send, and when nothing
    is due, sleep ``MAILER_EMPTY_QUEUE_SLEEP`` seconds (default 30) before
    looking again; forever, or until ``should_stop()`` is true (checked
    before each look). While ``MAILER_PAUSE_SEND`` is true it sends nothing.
    """
    from mailer.conf import conf
    from mailer.models import Message

    while not should_stop():
        if conf.MAILER_PAUSE_SEND or not Message.objects.due().exists():
            logger.debug(
                "sleeping for %s seconds before checking queue again",
                conf.MAILER_EMPTY_QUEUE_SLEEP,
            )
            sleep(
                30
                if conf.MAILER_EMPTY_QUEUE_SLEEP is None
                else conf.MAILER_EMPTY_QUEUE_SLEEP
            )
            continue
        send_all()


# -- MAILER_ERROR_HANDLER ----------------------------------------------------------


def apply_error_handler(connection, message, error: Exception, outcome):
    """Call django-mailer's ``MAILER_ERROR_HANDLER`` for a delivery error and
    return the outcome to record.

    The handler is called with django-mailer's arguments,
    ``handler(connection, message, exc)``: the sending backend (``None`` if
    none is open), our ``Message`` (with django-mailer's ``email``,
    ``to_addresses``, ``subject`` and ``defer()``) and the exception. It
    returns ``(connection, status)``: a ``None`` connection makes the next
    message reconnect; status ``"sent"`` records the message as sent,
    ``"deferred"`` as deferred (backoff, attempts counted), ``"failed"`` as
    failed for good; any other status keeps our classification of ``exc``.
    A handler that raises is logged and our classification stands (in
    django-mailer it stopped the whole run).
    """
    from django.utils.module_loading import import_string

    from mailer.conf import conf
    from mailer.sending.outcomes import Outcome, Verdict

    handler = import_string(conf.MAILER_ERROR_HANDLER)
    try:
        new_connection, status = handler(connection.backend, message, error)
    except Exception:
        logger.exception("MAILER_ERROR_HANDLER %s raised", conf.MAILER_ERROR_HANDLER)
        return outcome
    if new_connection is None and connection.backend is not None:
        connection.close()
        if connection.is_smtp:
            connection.backend.connection = None
        else:
            connection.backend = None
    verdict = {
        "sent": Verdict.SENT,
        "deferred": Verdict.DEFERRED,
        "failed": Verdict.FAILED,
    }.get(status)
    if verdict is None or verdict is outcome.verdict:
        return outcome
    reply = f"{outcome.reply} (MAILER_ERROR_HANDLER: {status})"
    return Outcome(verdict, outcome.code, reply)
