from django.conf import settings
from django.contrib import admin

from mailer.actions import EmailUpdate, EmailUpdateAdminMixin
from newsroom.models import Article, Issue, Profile, Subscriber
from newsroom.recipients import email_edition_readers

FROM = "The Daily Bugle <news@bugle.example>"


def email_context(obj: object) -> dict[str, str]:
    return {"site_url": settings.MAILER_SITE_URL}


def issue_subject(issue: Issue) -> str:
    lead = issue.lead
    headline = f": {lead.heading}" if lead else ""
    return f"The Daily Bugle — {issue.date:%A %-d %B}{headline}"


class ArticleInline(admin.StackedInline):
    model = Article
    extra = 1
    fields = ["position", "heading", "standfirst", "body", "published"]


@admin.register(Issue)
class IssueAdmin(EmailUpdateAdminMixin, admin.ModelAdmin):
    list_display = ["__str__", "date", "published"]
    date_hierarchy = "date"
    inlines = [ArticleInline]
    email_update = EmailUpdate(
        subject=issue_subject,
        text_template="newsroom/email/issue.txt",
        html_template="newsroom/email/issue.html",
        recipients=email_edition_readers,
        from_email=FROM,
        context=email_context,
        list_id="daily",
    )


@admin.register(Article)
class ArticleAdmin(EmailUpdateAdminMixin, admin.ModelAdmin):
    list_display = ["heading", "issue", "published"]
    list_filter = ["published"]
    search_fields = ["heading", "standfirst"]
    email_update = EmailUpdate(
        subject=lambda article: f"Breaking: {article.heading}",
        text_template="newsroom/email/article.txt",
        html_template="newsroom/email/article.html",
        recipients=email_edition_readers,
        from_email=FROM,
        context=email_context,
        list_id="breaking",
    )


@admin.register(Subscriber)
class SubscriberAdmin(admin.ModelAdmin):
    list_display = ["email", "name", "active", "created_at"]
    list_filter = ["active"]
    search_fields = ["email", "name"]


@admin.register(Profile)
class ProfileAdmin(admin.ModelAdmin):
    list_display = ["user", "subscribed"]
    list_filter = ["subscribed"]
