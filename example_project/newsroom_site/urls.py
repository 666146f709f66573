from django.contrib import admin
from django.urls import include, path
from newsroom import views

urlpatterns = [
    path("", views.front_page, name="front_page"),
    path("admin/", admin.site.urls),
    path("mail/", include("mailer.urls")),
    path("newsletters/", include("mailer.subscriptions.urls")),
]
