"""The benchmark's newsletter: deterministic content of realistic size.

One issue renders to about 3 KB of text and 10 KB of HTML (a table layout
with inline styles, as newsletters are), personalised with the reader's name
and unsubscribe link. Subscribers are ``reader<N>@example.com`` with a name.
"""

from __future__ import annotations

import random
import textwrap
from typing import Any

WORDS = (
    "council bridge river budget school harbour festival station library "
    "market weather museum election street garden hospital tram season "
    "opening report vote plan city district mayor park night week residents "
    "approved delayed announced reopened expected local new old final first "
    "the a of to and in on for with after before about over under"
).split()

FIRST = "Ada Ben Cara Dev Eli Fay Gus Hana Ivo Jun Kai Lea Max Noor Otto Pia".split()
LAST = "Ng Ortiz Park Quinn Rossi Silva Tan Ueda Vega Wolf Xu Young Zhou".split()


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(8, 16))]
    return " ".join(words).capitalize() + "."


def _paragraph(rng: random.Random, sentences: int) -> str:
    return " ".join(_sentence(rng) for _ in range(sentences))


def issue_context(issue: Any) -> dict[str, Any]:
    """Template context: six stories, each a title, a summary and a link."""
    rng = random.Random(1)
    stories = []
    for n in range(6):
        summary = _paragraph(rng, 4)
        stories.append(
            {
                "title": _sentence(rng).rstrip("."),
                "summary": summary,
                "summary_text": textwrap.fill(summary, 72),
                "url": f"https://news.example.com/2026/11/story-{n + 1}/",
            }
        )
    return {"stories": stories}


def subscriber(n: int) -> dict[str, str]:
    """The n-th subscriber, as the admin's ``values("email", "name")`` gives."""
    return {
        "email": f"reader{n}@example.com",
        "name": f"{FIRST[n % len(FIRST)]} {LAST[n // len(FIRST) % len(LAST)]}",
    }


def subscribers(count: int, start: int = 0) -> list[dict[str, str]]:
    return [subscriber(n) for n in range(start, start + count)]
