"""One-click unsubscribe (RFC 8058).

POST unsubscribes at once, with no login, cookie or CSRF token: the mailbox
provider posts ``List-Unsubscribe=One-Click`` on the reader's behalf, and
the signed token is the authorisation. GET only shows a confirmation page with
a button, because mail scanners and link previews follow every link.
"""

from __future__ import annotations

from django.core import signing
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from mailer.suppression import is_suppressed
from mailer.suppression import unsubscribe as record_unsubscribe
from mailer.unsubscribe.tokens import read_token

__all__ = ["unsubscribe"]


@csrf_exempt
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """GET: the confirmation page (``mailer/unsubscribe_confirm.html``), or
    the done page with ``already`` set when the address is on the
    don't-send list already;
    POST: put the token's address on the don't-send list
    (``mailer.suppression.unsubscribe``) and show
    ``mailer/unsubscribe_done.html``. Both templates get ``address`` and
    ``token``; a site overrides them by name.

    :raises django.http.Http404: the token is forged or damaged.
    """
    try:
        unsubscribe_request = read_token(token)
    except signing.BadSignature:
        raise Http404("This unsubscribe link is not valid.") from None
    context = {"address": unsubscribe_request.address, "token": token}
    if request.method == "GET":
        if is_suppressed(unsubscribe_request.address):
            # A link used before (or an address blocked for another reason):
            # nothing to confirm.
            return render(
                request, "mailer/unsubscribe_done.html", {**context, "already": True}
            )
        return render(request, "mailer/unsubscribe_confirm.html", context)
    record_unsubscribe(unsubscribe_request.address, job_id=unsubscribe_request.job_id)
    return render(request, "mailer/unsubscribe_done.html", context)
