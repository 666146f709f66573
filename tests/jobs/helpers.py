"""Helpers shared by the job tests."""

from __future__ import annotations

from mailer.jobs.services import RenderedEmail, render_email
from tests.testapp.models import Story


def render_story(text_template=None, html_template=None) -> RenderedEmail:
    """The test app's templates rendered once for a story, as the admin
    action renders a job's content (subject "Morning")."""
    return render_email(
        subject="Morning",
        text_template=text_template,
        html_template=html_template,
        obj=Story(headline="Bridge reopens"),
    )
