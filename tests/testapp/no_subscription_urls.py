"""A URLconf without mailer.subscriptions' URLs (its system check)."""

from django.urls import include, path

urlpatterns = [path("mail/", include("mailer.urls"))]
