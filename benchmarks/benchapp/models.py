"""What a news site has: issues to announce and subscribers to tell."""

from django.db import models


class Issue(models.Model):
    headline = models.CharField(max_length=200)
    date = models.DateField()

    def __str__(self) -> str:
        return self.headline


class Subscriber(models.Model):
    email = models.CharField(max_length=320)
    name = models.CharField(max_length=100, blank=True)
    active = models.BooleanField(default=True)

    def __str__(self) -> str:
        return self.email
