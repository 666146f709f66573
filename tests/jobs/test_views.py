"""The web archive's views (``mailer.jobs.views``): the email's links leave
the sandboxed frame for the page."""

from __future__ import annotations

import pytest

from mailer.jobs.views import links_open_in_the_page

BASE = '<base target="_top">'


@pytest.mark.parametrize(
    "html, expected",
    [
        (
            "<!doctype html><html><head><title>T</title></head><body>x</body></html>",
            f"<!doctype html><html><head>{BASE}<title>T</title></head>"
            "<body>x</body></html>",
        ),
        (
            '<html><HEAD lang="en"><meta charset="utf-8"></HEAD></html>',
            f'<html><HEAD lang="en">{BASE}<meta charset="utf-8"></HEAD></html>',
        ),
        # No head: at the start (the parser puts it in the implied head).
        ("<p>Hi</p>", f"{BASE}<p>Hi</p>"),
        # <header> is not <head>.
        ("<header>News</header>", f"{BASE}<header>News</header>"),
    ],
)
def test_the_base_target_goes_first_in_the_head(html, expected):
    assert links_open_in_the_page(html) == expected
