"""Bytes on the wire for one claimed message, and who it must not reach.

Single mail was built by Django when it was queued; job mail is built here
from the job's template, prepared once per job and run (see ``mailer.jobs.compose``).
The don't-send list is read once per batch, right before sending.
"""

from __future__ import annotations

import hashlib
import hmac

from django.conf import settings
from django.core.mail.utils import DNS_NAME
from django.utils.encoding import force_bytes

from mailer.addresses import envelope_address, normalize
from mailer.jobs.compose import JobTemplate
from mailer.models import Message, MessageJob
from mailer.suppression import reasons
from mailer.unsubscribe.tokens import UnsubscribeLinks, site_domain

__all__ = ["MessageBuilder"]


class MessageBuilder:
    """Builds the messages of one run; keeps each job's template."""

    def __init__(self) -> None:
        self.templates: dict[int, JobTemplate | Exception] = {}
        self.archive_urls: dict[int, str] = {}
        self.links = UnsubscribeLinks()
        self.domain = site_domain() or DNS_NAME.get_fqdn()
        # django.utils.crypto.salted_hmac("mailer.message-id", ...,
        # algorithm="sha256"), its key derived once per run, not per message.
        key = hashlib.sha256(
            b"mailer.message-id" + force_bytes(settings.SECRET_KEY)
        ).digest()
        self._id_mac = hmac.new(key, digestmod=hashlib.sha256)

    def suppressed_among(self, batch: list[Message]) -> dict[str, str]:
        """The don't-send entries (normalised address -> reason) that concern
        this batch: the reader of job mail, every envelope recipient of single
        mail. Checked right before sending, one query per batch: an
        unsubscribe that arrived after the job was expanded still stops the
        email."""
        addresses: set[str] = set()
        for message in batch:
            if message.job_id is None and message.envelope_to:
                addresses.update(normalize(a) for a in message.envelope_to)
            else:
                addresses.add(normalize(message.to_address))
        return reasons(addresses)

    def message_id(self, message: Message) -> str:
        """The job email's Message-ID, fixed for its whole life.

        Stored on the row with the first attempt's outcome and reused from
        there; before that it is derived from the row itself (job, message,
        a keyed hash under ``SECRET_KEY`` so ids of two sites never meet), so
        even an attempt whose outcome a ``kill -9`` lost went out with the
        same id as every later one. Receivers de-duplicate on it (RFC 5322
        3.6.4), which is what makes retrying a message in doubt safe.
        """
        if message.message_id:
            return message.message_id
        key = f"{message.job_id}.{message.pk}"
        mac = self._id_mac.copy()
        mac.update(key.encode())
        tag = mac.hexdigest()
        return f"<{key}.{tag[:16]}@{self.domain}>"

    def archive_url(self, job_id: int) -> str:
        """The job's public "view in browser" address (``mailer.archive``),
        one per job and run; empty when it cannot be reversed
        (:func:`mailer.jobs.archive.archive_url`)."""
        url = self.archive_urls.get(job_id)
        if url is None:
            from mailer.jobs.archive import archive_url

            url = self.archive_urls[job_id] = archive_url(job_id)
        return url

    def template(self, job_id: int) -> JobTemplate:
        """The job's :class:`~mailer.jobs.compose.JobTemplate`, made once per
        run (with ``List-Id``, RFC 2919, and ``List-Unsubscribe-Post``, RFC
        8058). A job whose template cannot be made raises that error again
        for each of its messages, which then fail.

        :raises mailer.models.MessageJob.DoesNotExist: no such job.
        """
        template = self.templates.get(job_id)
        if template is None:
            job = MessageJob.objects.defer("recipients").get(pk=job_id)
            headers = dict(job.headers or {})
            if job.list_id:
                headers.setdefault("List-Id", f"<{job.list_id}.{self.domain}>")
            if self.links.enabled:
                headers.setdefault(
                    "List-Unsubscribe-Post", "List-Unsubscribe=One-Click"
                )
            try:
                template = JobTemplate(
                    subject=job.subject,
                    from_email=job.from_email,
                    body_text=job.body_text,
                    body_html=job.body_html,
                    headers=headers,
                    message_id_domain=self.domain,
                )
            except Exception as error:  # noqa: BLE001 - remembered, fails each message
                template = error
            self.templates[job_id] = template
        if isinstance(template, Exception):
            raise template
        return template

    def build(self, message: Message) -> tuple[str, list[str], bytes, str]:
        """(envelope from, recipients, bytes, Message-ID) of ``message``, with
        the VERP envelope sender (``MAILER_BOUNCE_ADDRESS``) and the DKIM
        signature (``MAILER_DKIM_KEY_FILE``) when configured."""
        envelope_from, recipients, data, message_id = self._compose(message)
        from mailer.bounces.finish import finish

        return finish(message, envelope_from, recipients, data, message_id)

    def _compose(self, message: Message) -> tuple[str, list[str], bytes, str]:
        # Addresses are validated at the door (or at expansion), and again
        # here, at a microsecond each: a row can reach the queue without
        # passing the door (an older version, an edit in the database), and a
        # relay may well take ``not-an-address`` as a local mailbox. An
        # invalid one fails this message only.
        if message.job_id is None:
            # Case-insensitive duplicates go once (the don't-send list's rule):
            # ten thousand spellings of one address are one mailbox, not ten
            # thousand RCPTs of the same email.
            recipients: dict[str, str] = {}
            for address in message.envelope_to or [message.to_address]:
                spec = envelope_address(address)
                recipients.setdefault(normalize(spec), spec)
            return (
                message.envelope_from,
                list(recipients.values()),
                bytes(message.mime),
                message.message_id,
            )
        template = self.template(message.job_id)
        to = envelope_address(message.to_address)
        values = {**(message.context or {}), "email": message.to_address}
        # Hook: a recipient's own "unsubscribe_url" (given in the job's
        # recipients, e.g. a per-list link from mailer.subscriptions) is used
        # in the body and in List-Unsubscribe instead of the global link.
        url = values.get("unsubscribe_url") or self.links.url(
            message.to_address, message.job_id
        )
        values["unsubscribe_url"] = url
        values["archive_url"] = self.archive_url(message.job_id)
        data, message_id = template.render(
            to,
            values,
            extra_headers=self.links.headers(url),
            message_id=self.message_id(message),
        )
        return template.envelope_from, [to], data, message_id
