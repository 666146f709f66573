"""``path("mail/", include("mailer.urls"))``: the one-click unsubscribe views."""

from django.urls import path

from mailer import views

app_name = "mailer"

urlpatterns = [
    path("unsubscribe/<str:token>/", views.unsubscribe, name="unsubscribe"),
]
