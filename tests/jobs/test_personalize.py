"""Per-recipient values and segments (``mailer.jobs.personalize``): filled,
kept or dropped per reader, and what the door refuses. The send-path tests
read what the real SMTP server received."""

from __future__ import annotations

import re

import pytest

from mailer.exceptions import InvalidEmail
from mailer.jobs.expand import expand_pending_jobs
from mailer.jobs.personalize import (
    MAX_VARIANTS,
    Personalizer,
    find_broken_segment,
    find_mangled,
)
from mailer.jobs.services import RenderedEmail, create_job
from mailer.models import MessageJob
from mailer.sending.engine import send_queued
from tests.conftest import by_recipient

LINK = "https://news.example.com/prefs/?a=1&b=2"


def body(message, subtype: str) -> str:
    """A received part's text, with the wire's CRLF read as LF."""
    return message.get_body((subtype,)).get_content().replace("\r\n", "\n")


@pytest.mark.parametrize(
    "text, values, escape, expected",
    [
        (
            "Hi[[mj?url]], see [[mj:url]][[/mj?url]].",
            {"url": LINK},
            False,
            f"Hi, see {LINK}.",
        ),
        ("Hi[[mj?url]], see [[mj:url]][[/mj?url]].", {"url": ""}, False, "Hi."),
        ("Hi[[mj?url]], see [[mj:url]][[/mj?url]].", {"url": None}, False, "Hi."),
        ("Hi[[mj?url]], see [[mj:url]][[/mj?url]].", {}, False, "Hi."),
        ("A\n[[mj?url]]Prefs: [[mj:url]]\n[[/mj?url]]B\n", {}, False, "A\nB\n"),
        (
            '[[mj?url]]<a href="[[mj:url]]">[[mj:name]]</a>[[/mj?url]]',
            {"url": LINK, "name": "Zoë & <Co>"},
            True,
            '<a href="https://news.example.com/prefs/?a=1&amp;b=2">'
            "Zoë &amp; &lt;Co&gt;</a>",
        ),
        (
            "[[mj?a]]A[[mj?b]]B[[/mj?b]]a[[/mj?a]]|[[mj?b]]b[[/mj?b]]",
            {"a": "x", "b": ""},
            False,
            "Aa|",
        ),
        (
            "[[mj?a]]A[[mj?b]]B[[/mj?b]]a[[/mj?a]]|[[mj?b]]b[[/mj?b]]",
            {"a": "", "b": "x"},
            False,
            "|b",
        ),
        (
            "[[mj?a]]A[[mj?b]]B[[/mj?b]]a[[/mj?a]]|[[mj?b]]b[[/mj?b]]",
            {"a": "x", "b": "x"},
            False,
            "ABa|b",
        ),
        ("[[mj?vip]]VIP[[/mj?vip]]", {"vip": 0}, False, ""),
        ("[[mj?vip]]VIP[[/mj?vip]]", {"vip": False}, False, ""),
        ("[[mj?vip]]VIP[[/mj?vip]]", {"vip": "0"}, False, "VIP"),
        # A reader's value is never read as a marker or a placeholder.
        (
            "[[mj?a]]<[[mj:a]]>[[/mj?a]][[mj?b]]B[[/mj?b]]",
            {"a": "[[/mj?a]][[mj:b]]", "b": ""},
            False,
            "<[[/mj?a]][[mj:b]]>",
        ),
    ],
    ids=[
        "kept",
        "dropped-empty",
        "dropped-none",
        "dropped-missing",
        "dropped-whole-lines",
        "kept-html-escaped",
        "nested-inner-dropped",
        "nested-outer-dropped",
        "nested-both-kept",
        "zero-drops",
        "false-drops",
        "text-zero-keeps",
        "values-stay-values",
    ],
)
def test_a_segment_is_kept_or_dropped_per_reader(text, values, escape, expected):
    personalizer = Personalizer(text, escape=escape)
    assert personalizer.render(values) == expected
    assert not personalizer.is_static


def test_text_without_markers_takes_the_plain_path():
    personalizer = Personalizer("Hi [[mj:name]], mj? is no marker")
    assert personalizer.conditions == ()
    assert personalizer.render({"name": "Ann"}) == "Hi Ann, mj? is no marker"


def test_each_combination_is_made_once_and_kept_within_bounds():
    fields = [f"f{i}" for i in range(8)]
    text = "".join(f"[[mj?{f}]]{f}[[/mj?{f}]]" for f in fields)
    personalizer = Personalizer(text)
    ann = {"f0": "x"}
    assert personalizer.variant(personalizer.key(ann)) is personalizer.variant(
        personalizer.key(ann)
    )
    for number in range(2 ** len(fields)):  # bounded: 256 combinations
        values = {f: "x" for i, f in enumerate(fields) if number >> i & 1}
        assert personalizer.render(values) == "".join(sorted(values))
    assert len(personalizer._made) == MAX_VARIANTS


@pytest.mark.parametrize(
    "text, number, line, reason",
    [
        (
            "Hi\n[[mj?url]]Prefs\n",
            2,
            "[[mj?url]]Prefs",
            "[[mj?url]] is not closed by [[/mj?url]]",
        ),
        (
            "Hi\nPrefs[[/mj?url]]\n",
            2,
            "Prefs[[/mj?url]]",
            "[[/mj?url]] closes no segment",
        ),
        (
            "[[mj?a]]A\n[[mj?b]]B[[/mj?a]]b[[/mj?b]]",
            2,
            "[[mj?b]]B[[/mj?a]]b[[/mj?b]]",
            "[[/mj?a]] closes a segment while [[mj?b]] is still open",
        ),
    ],
    ids=["unclosed", "closes-nothing", "crossed"],
)
def test_markers_that_do_not_pair_up_are_found_naming_the_line(
    text, number, line, reason
):
    problem = find_broken_segment(text)
    assert (problem.number, problem.line, problem.reason) == (number, line, reason)
    with pytest.raises(ValueError, match=re.escape(reason)):
        Personalizer(text)


@pytest.mark.parametrize(
    "damaged",
    [
        "Prefs [[MJ?URL]]x[[/MJ?URL]]",
        "Prefs [[mj?url]]x[[/Mj?url]]",
        "https://x.example/?p=%5B%5Bmj%3Furl%5D%5D",
        "Prefs mj?url]]",
        "&#91;&#91;&#47;mj?url&#93;&#93;",
    ],
)
def test_a_damaged_segment_marker_is_found(damaged):
    assert find_mangled("[[mj?a]]ok[[/mj?a]]\n" + damaged) == (2, damaged)
    assert find_mangled("[[mj?a]]ok [[mj:a]][[/mj?a]]") is None


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body, words",
    [
        (
            "Hi\n\n[[mj?url]]Prefs: [[mj:url]]\n",
            "The text body holds a broken per-recipient segment, line 3: "
            "[[mj?url]]Prefs: [[mj:url]]. [[mj?url]] is not closed by [[/mj?url]]. "
            "Each {% ifrecipient %} segment must be closed",
        ),
        (
            "Hi\n\n[[MJ?URL]]Prefs[[/MJ?URL]]\n",
            "The text body holds a damaged per-recipient segment marker, line 3: "
            "[[MJ?URL]]Prefs[[/MJ?URL]].",
        ),
    ],
    ids=["unbalanced", "mangled-case"],
)
def test_create_job_refuses_broken_segments_naming_part_and_line(body, words):
    with pytest.raises(InvalidEmail) as refused:
        create_job(
            content=RenderedEmail(subject="Hi", body_text=body),
            recipients=["ann@example.com"],
        )
    assert str(refused.value).startswith(words)
    assert not MessageJob.objects.exists()


@pytest.mark.django_db
def test_each_reader_gets_the_segment_only_with_a_value(mailserver):
    content = RenderedEmail(
        subject="Issue 7[[mj?plan]] ([[mj:plan]] edition)[[/mj?plan]]",
        body_text=(
            "Hello [[mj:name]],\n"
            "[[mj?preferences_url]]Your newsletters: [[mj:preferences_url]]\n"
            "[[/mj?preferences_url]]Unsubscribe: [[mj:unsubscribe_url]]\n"
        ),
        body_html=(
            "<p>Hello [[mj:name]],</p>\n[[mj?preferences_url]]"
            '<p><a href="[[mj:preferences_url]]">Your newsletters</a></p>\n'
            "[[/mj?preferences_url]]<p>Bye</p>\n"
        ),
    )
    create_job(
        content=content,
        recipients=[
            {
                "email": "list@example.com",
                "name": "Zoë <Z>",
                "preferences_url": LINK,
                "unsubscribe_url": "https://x.example/u/1",
                "plan": "Gold",
            },
            {
                "email": "edition@example.com",
                "name": "Ed",
                "unsubscribe_url": "https://x.example/u/2",
            },
        ],
    )
    expand_pending_jobs()
    assert send_queued().sent == 2

    received = {a: m.message for a, m in by_recipient(mailserver.messages).items()}
    reader, edition = received["list@example.com"], received["edition@example.com"]
    assert reader["Subject"] == "Issue 7 (Gold edition)"
    assert body(reader, "plain") == (
        "Hello Zoë <Z>,\n"
        f"Your newsletters: {LINK}\n"
        "Unsubscribe: https://x.example/u/1\n"
    )
    assert body(reader, "html") == (
        "<p>Hello Zoë &lt;Z&gt;,</p>\n"
        '<p><a href="https://news.example.com/prefs/?a=1&amp;b=2">'
        "Your newsletters</a></p>\n<p>Bye</p>\n"
    )
    assert edition["Subject"] == "Issue 7"
    assert body(edition, "plain") == ("Hello Ed,\nUnsubscribe: https://x.example/u/2\n")
    assert body(edition, "html") == ("<p>Hello Ed,</p>\n<p>Bye</p>\n")


@pytest.mark.django_db
def test_a_dropped_segment_that_joins_long_lines_goes_quoted_printable(mailserver):
    """Dropping a segment joins the text around it into one line: 600 + 600
    octets, past 998, which the per-layout bound sees."""
    text = "a" * 600 + "[[mj?x]]\n[[/mj?x]]" + "b" * 600 + "\n"
    create_job(
        content=RenderedEmail(subject="S", body_text=text),
        recipients=[{"email": "ann@example.com", "x": "1"}, "bob@example.com"],
    )
    expand_pending_jobs()
    assert send_queued().sent == 2

    received = by_recipient(mailserver.messages)
    ann, bob = received["ann@example.com"], received["bob@example.com"]
    assert ann.message["Content-Transfer-Encoding"] == "7bit"
    assert bob.message["Content-Transfer-Encoding"] == "quoted-printable"
    assert body(bob.message, "plain") == "a" * 600 + "b" * 600 + "\n"
    assert max(len(line) for line in bob.data.split(b"\r\n")) <= 998
