"""What a reader, an editor or a command does to subscriptions; the views,
admin and commands are thin glue over these functions."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings as django_settings
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from mailer.addresses import addr_spec, normalize
from mailer.conf import conf
from mailer.unsubscribe.tokens import ascii_url

from . import signals, tokens
from .conf import settings
from .models import (
    ConsentWording,
    ErasedAddress,
    Leaving,
    MailingList,
    Source,
    Status,
    Subscription,
)

__all__ = [
    "absolute_url",
    "confirm",
    "erase",
    "export_person",
    "leave",
    "leave_all",
    "left_everything",
    "preferences_url",
    "send_confirmation",
    "set_lists",
    "subscribe",
    "unsubscribe_url",
]


def absolute_url(view: str, token: str) -> str:
    """The absolute URL of one of this app's token views, under
    ``MAILER_SITE_URL`` (the site's address as readers reach it)."""
    path = reverse(f"mailer_subscriptions:{view}", args=[token])
    return ascii_url(f"{(conf.MAILER_SITE_URL or '').rstrip('/')}{path}")


def preferences_url(address: str) -> str:
    """The absolute link to ``address``'s preference centre (signed, does
    not expire), as put in every email to a subscriber."""
    return absolute_url("preferences", tokens.make(tokens.PREFERENCES, address))


def unsubscribe_url(address: str, list_ids: list[int]) -> str:
    """The absolute one-click link that takes ``address`` off the lists
    ``list_ids`` (signed, does not expire; RFC 8058 ``List-Unsubscribe``)."""
    return absolute_url(
        "unsubscribe", tokens.make(tokens.UNSUBSCRIBE, address, list_ids)
    )


def subscribe(
    address: str,
    lists: Iterable[MailingList],
    *,
    name: str = "",
    source: str = Source.FORM,
    ip_address: str | None = None,
    wording: ConsentWording | None = None,
) -> list[Subscription]:
    """Subscribe ``address`` to ``lists``; return the subscriptions touched.

    A list with double opt-in gets a pending subscription and one
    confirmation email (high priority, through the queue) covers all such
    lists; at most one per address and list within
    ``MAILER_SUBSCRIPTIONS_RESEND_MINUTES``, so the form cannot flood an
    inbox. An active subscription is left as it is. Raises
    :class:`~mailer.exceptions.InvalidAddress` for an invalid address.
    """
    spec = addr_spec(address)
    key = normalize(spec)
    now = timezone.now()
    wording = wording or ConsentWording.current()
    to_confirm: list[Subscription] = []
    touched: list[Subscription] = []
    with transaction.atomic():
        for mailing_list in lists:
            sub, created = Subscription.objects.select_for_update().get_or_create(
                address=key,
                mailing_list=mailing_list,
                defaults={"name": name, "status": Status.PENDING},
            )
            if sub.status == Status.ACTIVE:
                continue
            recently = (
                sub.status == Status.PENDING
                and sub.confirmation_sent_at is not None
                and now - sub.confirmation_sent_at < settings.RESEND_WINDOW
            )
            if recently:
                continue
            sub.name = name or sub.name
            sub.consent_at, sub.consent_source = now, source
            sub.consent_wording, sub.ip_address = wording, ip_address
            sub.unsubscribed_at, sub.unsubscribed_how = None, ""
            if mailing_list.double_opt_in and source == Source.FORM:
                sub.status = Status.PENDING
                sub.confirmation_sent_at = now
                to_confirm.append(sub)
            else:
                sub.status, sub.confirmed_at = Status.ACTIVE, now
            sub.save()
            touched.append(sub)
        if to_confirm:
            send_confirmation(spec, to_confirm)
    for sub in touched:
        signals.subscribed.send(sender=Subscription, subscription=sub, how=source)
    return touched


def send_confirmation(address: str, subs: list[Subscription]) -> None:
    """Queue the confirmation email at high priority (``mailer.queue``).
    Templates: ``mailer_subscriptions/email/confirm_subject.txt`` and
    ``confirm.txt``, with ``lists``, ``confirm_url``, ``name``, ``expires``."""
    from mailer.queue import enqueue

    lists = [s.mailing_list for s in subs]
    token = tokens.make(tokens.CONFIRM, address, [m.pk for m in lists])
    context = {
        "lists": lists,
        "name": subs[0].name,
        "confirm_url": absolute_url("confirm", token),
        "expires_days": settings.CONFIRM_MAX_AGE.days,
    }
    subject = render_to_string(
        "mailer_subscriptions/email/confirm_subject.txt", context
    )
    email = EmailMultiAlternatives(
        subject=" ".join(subject.split()),
        body=render_to_string("mailer_subscriptions/email/confirm.txt", context),
        from_email=lists[0].from_email or django_settings.DEFAULT_FROM_EMAIL,
        to=[address],
    )
    enqueue(email, priority="high")


def confirm(address: str, list_ids: list[int]) -> list[Subscription]:
    """Activate the pending subscriptions of ``address`` on ``list_ids``;
    already active ones stay so, unsubscribed ones stay unsubscribed (the
    reader left after asking; an old link does not bring them back)."""
    now = timezone.now()
    done = []
    with transaction.atomic():
        for sub in Subscription.objects.select_for_update().filter(
            address=normalize(address),
            mailing_list_id__in=list_ids,
            status=Status.PENDING,
        ):
            sub.status, sub.confirmed_at = Status.ACTIVE, now
            sub.save(update_fields=["status", "confirmed_at"])
            done.append(sub)
    for sub in done:
        signals.confirmed.send(
            sender=Subscription, subscription=sub, how=sub.consent_source
        )
    return done


def leave(
    address: str, list_ids: Iterable[int], *, how: str = Leaving.LIST_LINK
) -> list[Subscription]:
    """Unsubscribe ``address`` from ``list_ids`` only; other lists stay."""
    now = timezone.now()
    left = []
    with transaction.atomic():
        for sub in (
            Subscription.objects.select_for_update()
            .filter(address=normalize(address), mailing_list_id__in=list(list_ids))
            .exclude(status=Status.UNSUBSCRIBED)
        ):
            sub.status, sub.unsubscribed_at, sub.unsubscribed_how = (
                Status.UNSUBSCRIBED,
                now,
                how,
            )
            sub.save(update_fields=["status", "unsubscribed_at", "unsubscribed_how"])
            left.append(sub)
    for sub in left:
        signals.unsubscribed.send(sender=Subscription, subscription=sub, how=how)
    return left


def leave_all(address: str) -> list[Subscription]:
    """Every list, and the core's don't-send list (``mailer.suppression``), so
    no newsletter reaches the address whatever its source."""
    from mailer.suppression import unsubscribe as suppress

    ids = Subscription.objects.for_address(address).values_list(
        "mailing_list_id", flat=True
    )
    left = leave(address, list(ids), how=Leaving.LEAVE_ALL)
    suppress(address)
    return left


def left_everything(sender: Any, address: str, **kwargs: Any) -> None:
    """Receiver of the core's ``mailer.signals.unsubscribed`` (the global
    one-click link): the address leaves every list. Calls :func:`leave`, not
    :func:`leave_all`, which would send that signal again."""
    ids = Subscription.objects.for_address(address).values_list(
        "mailing_list_id", flat=True
    )
    leave(address, list(ids), how=Leaving.LEAVE_ALL)


def set_lists(
    address: str,
    wanted: Iterable[MailingList],
    *,
    offered: Iterable[MailingList],
    name: str | None = None,
) -> None:
    """The preference centre's save: of the ``offered`` lists, join the
    ``wanted`` ones (active at once: the signed link proves the address) and
    leave the others; lists not offered are left as they are."""
    key = normalize(address)
    offered_ids = {m.pk for m in offered}
    wanted_ids = {m.pk for m in wanted} & offered_ids
    now = timezone.now()
    current = Subscription.objects.filter(address=key)
    if name is not None:
        current.update(name=name)
    on = set(
        current.filter(
            status=Status.ACTIVE, mailing_list_id__in=offered_ids
        ).values_list("mailing_list_id", flat=True)
    )
    leave(key, on - wanted_ids, how=Leaving.PREFERENCES)
    for mailing_list in MailingList.objects.filter(pk__in=wanted_ids - on):
        sub, _ = Subscription.objects.get_or_create(
            address=key, mailing_list=mailing_list
        )
        sub.status, sub.confirmed_at = Status.ACTIVE, now
        sub.consent_at, sub.consent_source = now, Source.FORM
        sub.consent_wording = ConsentWording.current()
        sub.unsubscribed_at, sub.unsubscribed_how = None, ""
        if name is not None:
            sub.name = name
        sub.save()
        signals.subscribed.send(sender=Subscription, subscription=sub, how=Source.FORM)


def export_person(address: str) -> dict[str, Any]:
    """Everything stored about ``address`` (an access request), as JSON-ready
    data."""
    key = normalize(address)
    from mailer import suppression
    from mailer.models import LogResult, MessageLog

    return {
        "address": key,
        "subscriptions": [
            {
                "list": s.mailing_list.slug,
                "name": s.name,
                "status": s.status,
                "consent_at": s.consent_at.isoformat(),
                "consent_source": s.consent_source,
                "consent_wording": s.consent_wording.text if s.consent_wording else "",
                "consent_version": s.consent_wording.version
                if s.consent_wording
                else "",
                "ip_address": s.ip_address,
                "confirmed_at": s.confirmed_at and s.confirmed_at.isoformat(),
                "unsubscribed_at": s.unsubscribed_at and s.unsubscribed_at.isoformat(),
                "unsubscribed_how": s.unsubscribed_how,
            }
            for s in Subscription.objects.filter(address=key).select_related(
                "mailing_list", "consent_wording"
            )
        ],
        "dont_send": list(suppression.reasons([key]).values()),
        "delivery_log": [
            {
                "when": when.isoformat(),
                "subject": subject,
                "result": LogResult(result).label,
                "reply": reply,
            }
            for when, subject, result, reply in MessageLog.objects.filter(
                recipient__iexact=key
            )
            .order_by("created_at")
            .values_list("created_at", "subject", "result", "reply")
        ],
    }


def erase(address: str) -> int:
    """Delete every subscription of ``address``, its don't-send entry and
    its delivery log (``MessageLog``: each holds the address in clear), and
    keep only a keyed hash (:class:`ErasedAddress`), so an import does not
    bring it back. Mail still in the queue is left to be sent or purged as
    usual (no queued email is lost). Returns the number of subscriptions
    deleted."""
    from mailer import suppression
    from mailer.models import MessageLog

    key = normalize(address)
    with transaction.atomic():
        subs = list(Subscription.objects.filter(address=key))
        for sub in subs:
            signals.unsubscribed.send(
                sender=Subscription, subscription=sub, how=Leaving.ERASED
            )
        count, _ = Subscription.objects.filter(address=key).delete()
        suppression.forget(key)
        MessageLog.objects.filter(recipient__iexact=key).delete()
        ErasedAddress.objects.get_or_create(digest=_digest(key))
    return count


def _digest(key: str) -> str:
    from .models import address_digest

    return address_digest(key)
