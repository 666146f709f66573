"""``path("mail/", include("mailer.urls"))``: the one-click unsubscribe views and
the web archive ("view in browser", a list's past emails)."""

from django.urls import path

from mailer.jobs import views as archive
from mailer.unsubscribe import views as unsubscribe

app_name = "mailer"

urlpatterns = [
    path("unsubscribe/<str:token>/", unsubscribe.unsubscribe, name="unsubscribe"),
    path("view/<str:token>/", archive.ArchiveEmailView.as_view(), name="archive_email"),
    path(
        "archive/<str:list_id>/",
        archive.ArchiveListView.as_view(),
        name="archive_list",
    ),
]
