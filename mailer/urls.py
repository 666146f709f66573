"""``path("mail/", include("mailer.urls"))``: the one-click unsubscribe views and
the web archive ("view in browser", a list's past emails)."""

from django.urls import path

from mailer import views

app_name = "mailer"

urlpatterns = [
    path("unsubscribe/<str:token>/", views.unsubscribe, name="unsubscribe"),
    path("view/<str:token>/", views.ArchiveEmailView.as_view(), name="archive_email"),
    path(
        "archive/<str:list_id>/", views.ArchiveListView.as_view(), name="archive_list"
    ),
]
