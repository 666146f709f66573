"""The template lint (``mailer.jobs.templatecheck``) and ``{% ifrecipient %}``
(``mailer/templatetags/mailer_recipient.py``): segments pass, segments that a
filter cuts or changes are refused naming the line."""

from __future__ import annotations

import re

import pytest
from django.template.loader import render_to_string

from mailer.exceptions import TemplateProblem
from tests.jobs.helpers import render_story
from tests.testapp.models import Story


def test_a_segment_renders_once_between_markers_and_passes_the_lint():
    content = render_story("testapp/segments/issue.txt", "testapp/segments/issue.html")
    assert content.body_text == (
        "Hello [[mj:name]],\n\nBridge reopens\n"
        "[[mj?preferences_url]]Your newsletters: [[mj:preferences_url]]\n"
        "[[/mj?preferences_url]]Unsubscribe: [[mj:unsubscribe_url]]\n"
    )
    assert content.body_html.splitlines()[2] == (
        '[[mj?preferences_url]]<p><a href="[[mj:preferences_url]]">Your '
        "newsletters</a>, [[mj:name]]</p>"
    )


def test_text_made_from_html_keeps_the_segment():
    content = render_story(html_template="testapp/segments/issue.html")
    assert "[[mj?preferences_url]]" in content.body_text
    assert "[[/mj?preferences_url]]" in content.body_text


@pytest.mark.parametrize(
    "template, words",
    [
        (
            "testapp/segments/cut.txt",
            "The text template 'testapp/segments/cut.txt' holds a broken "
            "per-recipient segment; line 2 of its output reads: "
            "[[mj?preferences_url]]Your newsletters: …. [[mj?preferences_url]] is "
            "not closed by [[/mj?preferences_url]]. Each {% ifrecipient %} segment "
            "must be closed by its {% endifrecipient %}",
        ),
        (
            "testapp/segments/upper.txt",
            "The text template 'testapp/segments/upper.txt' uses a per-recipient "
            "value in a way that cannot be personalised; line 1 of its output "
            "reads: Hello[[MJ?NAME]] AGAIN[[/MJ?NAME]].",
        ),
        (
            "testapp/segments/dotted.txt",
            "Email template has an error: {% ifrecipient %} takes one "
            "per-recipient field name, e.g. {% ifrecipient preferences_url %}"
            "...{% endifrecipient %}; got {% ifrecipient recipient.name %}",
        ),
    ],
    ids=["cut-by-a-filter", "upper-cased", "not-a-field-name"],
)
def test_a_broken_segment_is_refused_naming_the_line(template, words):
    with pytest.raises(TemplateProblem) as refused:
        render_story(template)
    # Django 6.0+ names the file in a template syntax error: "Template: <path>, ".
    message = re.sub(r"Template: \S+, ", "", str(refused.value), count=1)
    assert message.startswith(words)


def test_a_condition_on_a_recipient_value_is_refused_and_the_tag_suggested():
    with pytest.raises(TemplateProblem) as refused:
        render_story("testapp/faults/name_if.txt")
    assert "{% ifrecipient name %}...{% endifrecipient %}" in str(refused.value)


@pytest.mark.parametrize(
    "recipient, shown",
    [
        ({"name": "Ann", "preferences_url": "https://x.example/p"}, True),
        ({"name": "Ann", "preferences_url": ""}, False),
        ({"name": "Ann"}, False),
        (None, False),
    ],
    ids=["value", "empty", "missing", "no-recipient"],
)
def test_rendered_with_a_real_recipient_the_tag_decides_at_once(recipient, shown):
    text = render_to_string(
        "testapp/segments/issue.txt",
        {"object": Story(headline="Bridge"), "recipient": recipient},
    )
    assert ("Your newsletters: https://x.example/p\n" in text) is shown
    assert "mj" not in text
