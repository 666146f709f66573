"""A student daily's content and readers."""

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils.formats import date_format


class Issue(models.Model):
    """One day's paper."""

    date = models.DateField(unique=True)
    title = models.CharField(max_length=200, blank=True)
    published = models.BooleanField(default=True)

    class Meta:
        ordering = ["-date", "-id"]

    def __str__(self) -> str:
        return self.title or f"Issue of {date_format(self.date, 'l j F Y')}"

    @property
    def lead(self) -> "Article | None":
        return self.articles.filter(published=True).first()


class Article(models.Model):
    issue = models.ForeignKey(
        Issue, null=True, blank=True, on_delete=models.SET_NULL, related_name="articles"
    )
    heading = models.CharField(max_length=200)
    standfirst = models.CharField(max_length=300, blank=True)
    body = models.TextField(blank=True)
    published = models.BooleanField(default=True)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return self.heading

    def get_absolute_url(self) -> str:
        return reverse("front_page") + f"#article-{self.pk}"


class Subscriber(models.Model):
    """A reader who signed up for the email edition without an account."""

    email = models.EmailField(unique=True)
    name = models.CharField(max_length=100, blank=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["email"]

    def __str__(self) -> str:
        return self.email


class Profile(models.Model):
    """A site user (staff, contributors, readers with accounts)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile"
    )
    subscribed = models.BooleanField("gets the email edition", default=False)

    def __str__(self) -> str:
        return str(self.user)
