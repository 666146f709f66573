"""The public forms: signup and the preference centre."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from .models import MailingList

__all__ = ["ListsField", "PreferencesForm", "SubscribeForm"]


class ListsField(forms.ModelMultipleChoiceField):
    """Mailing lists as checkboxes."""

    widget = forms.CheckboxSelectMultiple


class SubscribeForm(forms.Form):
    """Signup: address, optional name, at least one public list, and a
    honeypot field people leave empty."""

    email = forms.EmailField(label=_("Email address"), max_length=254)
    name = forms.CharField(label=_("Name (optional)"), max_length=200, required=False)
    lists = ListsField(
        label=_("Newsletters"),
        queryset=MailingList.objects.filter(public=True),
        error_messages={"required": _("Choose at least one newsletter.")},
    )
    #: Honeypot: hidden from people by CSS and ``aria-hidden``, filled in by
    #: bots that fill every field. A filled one gets the usual answer and
    #: nothing is done.
    website = forms.CharField(
        label=_("Leave this field empty"), required=False, max_length=200
    )


class PreferencesForm(forms.Form):
    """The preference centre: name and lists (the view sets the lists on
    offer; none ticked is allowed)."""

    name = forms.CharField(label=_("Name"), max_length=200, required=False)
    lists = ListsField(
        label=_("Newsletters you receive"),
        queryset=MailingList.objects.filter(public=True),
        required=False,
    )
