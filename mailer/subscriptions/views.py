"""Public pages, in the manner of ``django.contrib.auth.views``: class-based,
no JavaScript, CSRF-protected forms, templates a site overrides under
``mailer_subscriptions/<name>.html``:

- ``subscribe_form.html`` / ``subscribe_done.html``: signup, and the same
  answer whatever the address (no enumeration);
- ``confirm.html`` / ``confirmed.html`` / ``link_invalid.html``: GET shows a
  button, POST confirms (mail scanners follow links; a GET changes nothing);
- ``preferences.html`` / ``preferences_saved.html`` / ``left_all.html``;
- ``unsubscribe_confirm.html`` / ``unsubscribed.html``: per-list one-click
  unsubscribe (RFC 8058: POST, no CSRF token, removes the token's lists only).
"""

from __future__ import annotations

from typing import Any

from django.core import signing
from django.core.cache import cache
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse_lazy
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from django.views.generic import FormView, TemplateView

from mailer.exceptions import InvalidAddress

from . import services, tokens
from .conf import settings
from .forms import PreferencesForm, SubscribeForm
from .models import MailingList, Source, Status, Subscription

__all__ = [
    "ConfirmView",
    "ListUnsubscribeView",
    "PreferencesSavedView",
    "PreferencesView",
    "SubscribeDoneView",
    "SubscribeView",
]

T = "mailer_subscriptions/"


def client_ip(request: HttpRequest) -> str:
    """``REMOTE_ADDR``; a site behind a proxy sets it from the forwarded
    header in its own middleware (Django does not trust headers for this)."""
    return request.META.get("REMOTE_ADDR") or "0.0.0.0"


def rate_limited(request: HttpRequest) -> bool:
    """Count this post against its IP's allowance in Django's cache; true
    when over ``MAILER_SUBSCRIPTIONS_RATE_LIMIT``."""
    limit, seconds = settings.RATE_LIMIT
    key = f"mailer_subscriptions:rate:{client_ip(request)}"
    cache.add(key, 0, timeout=seconds)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=seconds)
        count = 1
    return count > limit


class SubscribeView(FormView):
    """The signup form (``subscribe_form.html``): a valid POST subscribes
    the address to the chosen public lists and sends the confirmation email
    (double opt-in); ``?list=<slug>`` ticks lists in advance. More signups
    from one network than ``MAILER_SUBSCRIPTIONS_RATE_LIMIT`` allows get 429;
    a filled honeypot field is accepted and ignored. Templates live under
    ``mailer_subscriptions/``, overridable by name, as Django's auth views'
    are (https://docs.djangoproject.com/en/stable/topics/auth/default/#module-django.contrib.auth.views)."""

    template_name = T + "subscribe_form.html"
    form_class = SubscribeForm
    success_url = reverse_lazy("mailer_subscriptions:subscribe_done")

    def get_initial(self) -> dict[str, Any]:
        # ``?list=daily-headlines`` (repeatable) ticks lists in advance, for a
        # page or a box that offers one newsletter.
        slugs = self.request.GET.getlist("list")
        if not slugs:
            return {}
        return {"lists": MailingList.objects.filter(public=True, slug__in=slugs)}

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if rate_limited(request):
            form = self.get_form()
            form.add_error(None, "Too many signups from your network; try later.")
            return self.render_to_response(self.get_context_data(form=form), status=429)
        return super().post(request, *args, **kwargs)

    def form_valid(self, form: SubscribeForm) -> HttpResponse:
        if not form.cleaned_data["website"]:
            try:
                services.subscribe(
                    form.cleaned_data["email"],
                    form.cleaned_data["lists"],
                    name=form.cleaned_data["name"],
                    source=Source.FORM,
                    ip_address=client_ip(self.request),
                )
            except InvalidAddress:
                form.add_error("email", "Enter a valid email address.")
                return self.form_invalid(form)
        return super().form_valid(form)


class SubscribeDoneView(TemplateView):
    """The "check your inbox" page after a signup (``subscribe_done.html``)."""

    template_name = T + "subscribe_done.html"


class _TokenView(View):
    purpose = ""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            self.address, self.list_ids = tokens.read(self.purpose, kwargs["token"])
        except signing.SignatureExpired:
            return self.invalid(expired=True)
        except signing.BadSignature:
            return self.invalid(expired=False)
        return super().dispatch(request, *args, **kwargs)

    def invalid(self, *, expired: bool) -> HttpResponse:
        return TemplateResponse(
            self.request, T + "link_invalid.html", {"expired": expired}, status=404
        )

    def render(self, name: str, **context: Any) -> HttpResponse:
        context.setdefault("address", self.address)
        return TemplateResponse(self.request, T + name, context)


class ConfirmView(_TokenView):
    """The confirmation link (double opt-in): GET shows the lists and a
    button (link scanners follow every GET), POST activates the
    subscriptions. An invalid or expired token gets ``link_invalid.html``
    with status 404."""

    purpose = tokens.CONFIRM

    def get(self, request: HttpRequest, token: str) -> HttpResponse:
        lists = MailingList.objects.filter(pk__in=self.list_ids)
        return self.render("confirm.html", lists=lists)

    def post(self, request: HttpRequest, token: str) -> HttpResponse:
        services.confirm(self.address, self.list_ids)
        lists = MailingList.objects.filter(
            pk__in=self.list_ids,
            subscriptions__address=self.address,
            subscriptions__status=Status.ACTIVE,
        )
        return self.render("confirmed.html", lists=lists)


class PreferencesView(_TokenView):
    """The preference centre linked from every email: the reader's name and
    lists (public ones, and any private one they are on); POST saves them,
    or leaves everything with ``leave_all``."""

    purpose = tokens.PREFERENCES

    def form(self, data: Any = None) -> PreferencesForm:
        subs = Subscription.objects.filter(address=self.address)
        first = subs.exclude(name="").first()
        initial = {
            "name": first.name if first else "",
            "lists": [s.mailing_list_id for s in subs.filter(status=Status.ACTIVE)],
        }
        form = PreferencesForm(data, initial=initial)
        # Public lists, and any list the reader is on (so a private list can
        # be left too); a private list cannot be joined by editing the form.
        form.fields["lists"].queryset = self.offered()
        return form

    def offered(self):
        return MailingList.objects.filter(
            Q(public=True)
            | Q(
                subscriptions__address=self.address,
                subscriptions__status=Status.ACTIVE,
            )
        ).distinct()

    def get(self, request: HttpRequest, token: str) -> HttpResponse:
        return self.render("preferences.html", form=self.form(), token=token)

    def post(self, request: HttpRequest, token: str) -> HttpResponse:
        if request.POST.get("leave_all"):
            services.leave_all(self.address)
            return self.render("left_all.html")
        form = self.form(request.POST)
        if not form.is_valid():
            return self.render("preferences.html", form=form, token=token)
        services.set_lists(
            self.address,
            form.cleaned_data["lists"],
            offered=self.offered(),
            name=form.cleaned_data["name"],
        )
        return redirect("mailer_subscriptions:preferences_saved", token=token)


class PreferencesSavedView(_TokenView):
    """The page after saving preferences: the lists the reader is on now."""

    purpose = tokens.PREFERENCES

    def get(self, request: HttpRequest, token: str) -> HttpResponse:
        lists = MailingList.objects.filter(
            subscriptions__address=self.address,
            subscriptions__status=Status.ACTIVE,
        )
        return self.render("preferences_saved.html", lists=lists, token=token)


@method_decorator(csrf_exempt, name="dispatch")
class ListUnsubscribeView(_TokenView):
    """RFC 8058: the mailbox provider POSTs ``List-Unsubscribe=One-Click``
    with no cookie or CSRF token; the signed token is the authorisation.
    GET shows a confirmation page with a button; POST leaves the token's
    lists."""

    purpose = tokens.UNSUBSCRIBE

    def get(self, request: HttpRequest, token: str) -> HttpResponse:
        lists = MailingList.objects.filter(pk__in=self.list_ids)
        return self.render("unsubscribe_confirm.html", lists=lists, token=token)

    def post(self, request: HttpRequest, token: str) -> HttpResponse:
        services.leave(self.address, self.list_ids)
        lists = MailingList.objects.filter(pk__in=self.list_ids)
        return self.render(
            "unsubscribed.html",
            lists=lists,
            preferences_url=services.preferences_url(self.address),
        )
