"""Small models for admin-action tests: a site's own content and readers."""

from django.db import models


class Story(models.Model):
    headline = models.CharField(max_length=200)
    body = models.TextField(blank=True)

    class Meta:
        verbose_name_plural = "stories"  # Django's default says "storys"

    def __str__(self) -> str:
        return self.headline


class Reader(models.Model):
    email = models.CharField(max_length=320)
    name = models.CharField(max_length=100, blank=True)
    active = models.BooleanField(default=True)

    def __str__(self) -> str:
        return self.email
