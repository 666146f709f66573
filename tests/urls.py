from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    # Django's password reset email links to these (the switch test queues one).
    path("accounts/", include("django.contrib.auth.urls")),
    path("mail/", include("mailer.urls")),
    path("newsletters/", include("mailer.subscriptions.urls")),
]
