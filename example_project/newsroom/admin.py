"""The newsroom's admin: the editor ticks an issue (or a breaking story) and
picks "Send email update"; ``mailer`` does the rest out of band."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.utils.formats import date_format

from mailer.jobs.actions import EmailUpdate, EmailUpdateAdminMixin
from newsroom.models import Article, Issue, Profile, Subscriber
from newsroom.recipients import email_edition_readers

FROM = "The Daily Bugle <news@bugle.example>"


def email_context(obj: object) -> dict[str, str]:
    # Links in email must be absolute; the request is not at hand when a job
    # is rendered, so the site's public address comes from settings.
    return {"site_url": settings.MAILER_SITE_URL}


def issue_subject(issue: Issue) -> str:
    """The subject, e.g. "The Daily Bugle — Friday 27 November: <lead headline>"."""
    lead = issue.lead
    headline = f": {lead.heading}" if lead else ""
    return f"The Daily Bugle — {date_format(issue.date, 'l j F')}{headline}"


class ArticleInline(admin.StackedInline):
    model = Article
    extra = 1
    fields = ["position", "heading", "standfirst", "body", "published"]


@admin.register(Issue)
class IssueAdmin(EmailUpdateAdminMixin, admin.ModelAdmin):
    list_display = ["__str__", "date", "published"]
    list_filter = ["published"]
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
    list_select_related = ["issue"]
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
    date_hierarchy = "created_at"


class ProfileInline(admin.StackedInline):
    model = Profile
    can_delete = False


# Readers with an account choose the email edition on their user page.
User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class NewsroomUserAdmin(UserAdmin):
    inlines = [ProfileInline]
    list_select_related = ["profile"]
    list_display = [*UserAdmin.list_display, "email_edition"]

    @admin.display(boolean=True, description="email edition")
    def email_edition(self, user) -> bool:
        profile = getattr(user, "profile", None)
        return bool(profile and profile.subscribed)
