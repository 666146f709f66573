"""``path("newsletters/", include("mailer.subscriptions.urls"))``."""

from django.urls import path

from . import views

app_name = "mailer_subscriptions"

urlpatterns = [
    path("", views.SubscribeView.as_view(), name="subscribe"),
    path("thanks/", views.SubscribeDoneView.as_view(), name="subscribe_done"),
    path("confirm/<str:token>/", views.ConfirmView.as_view(), name="confirm"),
    path(
        "preferences/<str:token>/",
        views.PreferencesView.as_view(),
        name="preferences",
    ),
    path(
        "preferences/<str:token>/saved/",
        views.PreferencesSavedView.as_view(),
        name="preferences_saved",
    ),
    path(
        "unsubscribe/<str:token>/",
        views.ListUnsubscribeView.as_view(),
        name="unsubscribe",
    ),
]
