"""The last touch on each email before the wire: VERP sender, DKIM header.

Called by ``MessageBuilder.build`` (mailer/sending/build.py) for job and
single mail alike, after personalisation.
"""

from __future__ import annotations

from mailer.bounces import verp
from mailer.conf import conf
from mailer.models import Message
from mailer.sending import dkim

__all__ = ["finish"]


def finish(
    message: Message,
    envelope_from: str,
    recipients: list[str],
    data: bytes,
    message_id: str,
) -> tuple[str, list[str], bytes, str]:
    """Replace the envelope sender by its VERP form and sign the bytes.

    The null sender (``""``, RFC 5321 4.5.5: mail that must not bounce)
    stays null.

    :raises mailer.sending.dkim.DkimKeyError: signing is configured but the key is
        unusable; the engine stops its run, mail kept (the system check
        reports the key before that).
    :raises django.core.exceptions.ImproperlyConfigured: signing is
        configured without the ``[dkim]`` extra; the engine stops its run
        the same way (the system check reports it as ``mailer.E030``).
    """
    if conf.MAILER_BOUNCE_ADDRESS and envelope_from != "" and message.pk is not None:
        envelope_from = verp.envelope_sender(message.pk)
    if dkim.enabled():
        data = dkim.sign(data)
    return envelope_from, recipients, data, message_id
