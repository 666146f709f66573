from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from mailer.subscriptions.forms import SubscribeForm
from newsroom.models import Issue


def front_page(request: HttpRequest) -> HttpResponse:
    issues = Issue.objects.filter(published=True).prefetch_related("articles")[:7]
    return render(
        request,
        "newsroom/front_page.html",
        {"issues": issues, "subscribe_form": SubscribeForm()},
    )
