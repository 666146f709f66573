"""Lists, subscriptions, consent wording and erased addresses."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext_lazy as _

from mailer.addresses import normalize

__all__ = [
    "ConsentWording",
    "ErasedAddress",
    "Leaving",
    "ListMailing",
    "MailingList",
    "Source",
    "Status",
    "Subscription",
    "SubscriptionQuerySet",
    "address_digest",
    "validate_list_label",
]

_LIST_LABEL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
)


def validate_list_label(value: str) -> None:
    """RFC 2919's list-label (the part of ``List-Id`` before the site domain)."""
    if not _LIST_LABEL.fullmatch(value):
        raise ValidationError(
            _("Use ASCII letters, digits, dots and hyphens (RFC 2919 list-label).")
        )


class MailingList(models.Model):
    """One newsletter a reader can join or leave on its own."""

    name = models.CharField(_("name"), max_length=200)
    slug = models.SlugField(_("slug"), unique=True)
    description = models.TextField(_("description"), blank=True)
    list_id = models.CharField(
        _("List-Id label"),
        max_length=100,
        validators=[validate_list_label],
        help_text=_("Written as <label.site-domain> in the List-Id header."),
    )
    from_email = models.CharField(
        _("From"), max_length=320, blank=True, help_text=_("Empty: DEFAULT_FROM_EMAIL")
    )
    public = models.BooleanField(_("public"), default=True)
    double_opt_in = models.BooleanField(_("double opt-in"), default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]
        verbose_name = _("mailing list")

    def __str__(self) -> str:
        return self.name


class ConsentWording(models.Model):
    """The text a reader agreed to, versioned: a subscription points at the
    version it was given under, so a later rewording changes no record."""

    version = models.CharField(_("version"), max_length=50, unique=True)
    text = models.TextField(_("text"))
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.version

    @classmethod
    def current(cls) -> ConsentWording | None:
        """The newest wording (what a signup now agrees to), or ``None``."""
        return cls.objects.order_by("-created_at", "-id").first()


class Status(models.TextChoices):
    """A subscription's state: pending (double opt-in not yet confirmed),
    active (receives the list's mail) or unsubscribed (kept as a record)."""

    PENDING = "pending", _("pending confirmation")
    ACTIVE = "active", _("active")
    UNSUBSCRIBED = "unsubscribed", _("unsubscribed")


class Source(models.TextChoices):
    """How consent was given."""

    FORM = "form", _("signup form")
    IMPORT = "import", _("import")
    ADMIN = "admin", _("admin")
    API = "api", _("API")


class Leaving(models.TextChoices):
    """How a subscription ended."""

    LIST_LINK = "list-link", _("list unsubscribe link")
    PREFERENCES = "preferences", _("preference centre")
    LEAVE_ALL = "leave-all", _("left all lists")
    ADMIN = "admin", _("admin")
    ERASED = "erased", _("erased")


class SubscriptionQuerySet(models.QuerySet):
    """``Subscription.objects`` filters."""

    def active(self) -> SubscriptionQuerySet:
        """Subscriptions that receive mail."""
        return self.filter(status=Status.ACTIVE)

    def for_address(self, address: str) -> SubscriptionQuerySet:
        """Subscriptions of ``address``, in any spelling (normalized)."""
        return self.filter(address=normalize(address))


class Subscription(models.Model):
    """One address on one list, with the record of its consent."""

    address = models.CharField(
        _("address"), max_length=320, help_text=_("Canonical (addresses.normalize)")
    )
    name = models.CharField(_("name"), max_length=200, blank=True)
    mailing_list = models.ForeignKey(
        MailingList,
        on_delete=models.CASCADE,
        related_name="subscriptions",
        verbose_name=_("list"),
    )
    status = models.CharField(
        _("status"), max_length=20, choices=Status.choices, default=Status.PENDING
    )
    consent_at = models.DateTimeField(_("consent given"), default=timezone.now)
    consent_source = models.CharField(
        _("consent given through"),
        max_length=20,
        choices=Source.choices,
        default=Source.FORM,
    )
    consent_wording = models.ForeignKey(
        ConsentWording,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        verbose_name=_("consent wording"),
    )
    ip_address = models.GenericIPAddressField(_("IP address"), null=True, blank=True)
    confirmation_sent_at = models.DateTimeField(null=True, blank=True, editable=False)
    confirmed_at = models.DateTimeField(_("confirmed"), null=True, blank=True)
    unsubscribed_at = models.DateTimeField(_("unsubscribed"), null=True, blank=True)
    unsubscribed_how = models.CharField(
        _("unsubscribed through"), max_length=20, choices=Leaving.choices, blank=True
    )

    objects = SubscriptionQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["address", "mailing_list"],
                name="mailer_subscriptions_one_per_list",
            )
        ]
        indexes = [models.Index(fields=["mailing_list", "status"])]

    def __str__(self) -> str:
        return f"{self.address} on {self.mailing_list_id}"

    def save(self, *args, **kwargs) -> None:
        self.address = normalize(self.address)
        super().save(*args, **kwargs)


def address_digest(address: str) -> str:
    """A keyed hash of the canonical address (HMAC-SHA256 under
    ``SECRET_KEY``): recognises an erased address without storing it."""
    return salted_hmac(
        "mailer.subscriptions.erased", normalize(address), algorithm="sha256"
    ).hexdigest()


class ErasedAddress(models.Model):
    """An address whose data was erased; only its keyed hash is kept, so an
    import does not bring it back by accident."""

    digest = models.CharField(max_length=64, unique=True)
    erased_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = _("erased addresses")

    def __str__(self) -> str:
        return self.digest[:12]

    @classmethod
    def is_erased(cls, address: str) -> bool:
        """True when ``address`` (any spelling) was erased: its keyed hash is
        recorded."""
        return cls.objects.filter(digest=address_digest(address)).exists()


class ListMailing(models.Model):
    """A job sent to lists: which lists (the audience) a job had."""

    job = models.ForeignKey(
        "mailer.MessageJob", on_delete=models.CASCADE, related_name="+"
    )
    mailing_list = models.ForeignKey(
        MailingList, on_delete=models.CASCADE, related_name="mailings"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["job", "mailing_list"], name="mailer_subscriptions_job_list"
            )
        ]

    def __str__(self) -> str:
        return f"job {self.job_id} to list {self.mailing_list_id}"
