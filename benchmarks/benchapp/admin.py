"""The admin a newsroom would write: the action is the benchmark's subject."""

from django.contrib import admin

from benchmarks.benchapp.models import Issue, Subscriber
from benchmarks.workload import issue_context
from mailer.jobs.actions import EmailUpdate, EmailUpdateAdminMixin


def active_subscribers(issue: Issue):
    return Subscriber.objects.filter(active=True).values("email", "name")


ISSUE_EMAIL = EmailUpdate(
    subject=lambda issue: f"The Daily, {issue.date:%d %B %Y}: {issue.headline}",
    text_template="benchapp/issue_email.txt",
    html_template="benchapp/issue_email.html",
    recipients=active_subscribers,
    from_email="The Daily <news@example.com>",
    context=issue_context,
    list_id="daily",
)


@admin.register(Issue)
class IssueAdmin(EmailUpdateAdminMixin, admin.ModelAdmin):
    email_update = ISSUE_EMAIL


@admin.register(Subscriber)
class SubscriberAdmin(admin.ModelAdmin):
    list_display = ["email", "name", "active"]
