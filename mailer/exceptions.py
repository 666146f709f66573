"""Errors raised at the door, before anything is queued."""

from __future__ import annotations

__all__ = [
    "MailerError",
    "InvalidEmail",
    "InvalidAddress",
    "HeaderInjection",
    "MessageTooLarge",
    "TemplateProblem",
]


class MailerError(Exception):
    """Base class of this app's errors."""


class InvalidEmail(MailerError, ValueError):
    """The email cannot be queued; the message says why. Nothing was queued."""


class InvalidAddress(InvalidEmail):
    """An address is not a valid email address."""


class HeaderInjection(InvalidEmail):
    """A header value contains a line break (header injection)."""


class MessageTooLarge(InvalidEmail):
    """The message is larger than ``MAILER_MAX_MESSAGE_BYTES``."""


class TemplateProblem(InvalidEmail):
    """A job's templates could not be rendered; nothing was queued."""
