"""A readable text part from an HTML email, for jobs with only an HTML template.

Mailbox providers score HTML-only bulk mail as spam, and some readers read
text only. This is deliberately simple: block elements become line breaks,
links keep their target, scripts and styles vanish, entities are decoded.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

__all__ = ["html_to_text"]

_BLOCK = {
    "address",
    "article",
    "blockquote",
    "br",
    "div",
    "footer",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hr",
    "li",
    "ol",
    "p",
    "section",
    "table",
    "tr",
    "ul",
}
_SKIP = {"script", "style", "head", "title"}


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip_depth = 0
        self.links: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in _SKIP:
            self.skip_depth += 1
        elif tag in _BLOCK:
            self.out.append("\n")
            if tag == "li":
                self.out.append("* ")
            elif tag == "hr":
                self.out.append("-" * 20 + "\n")
        elif tag in ("td", "th"):
            # Layout tables put words in adjacent cells ("Read" "Share"),
            # which must not run together.
            self.out.append(" ")
        elif tag == "a":
            self.links.append(dict(attrs).get("href"))

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        # XHTML's <br/> and <hr/>, common in email templates, are one tag: one
        # line break like <br>, not an opening and a closing block.
        self.handle_starttag(tag, attrs)
        if tag not in _BLOCK:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skip_depth = max(0, self.skip_depth - 1)
        elif tag in _BLOCK:
            self.out.append("\n")
        elif tag == "a" and self.links:
            href = self.links.pop()
            if href and not href.startswith(("#", "mailto:")):
                self.out.append(f" ({href})")

    def handle_data(self, data: str) -> None:
        if not self.skip_depth:
            self.out.append(re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> str:
    """A plain-text rendering of ``html`` for the ``text/plain`` part: block
    elements on lines of their own, list items as ``* item``, links as
    ``text (url)`` (not ``#`` or ``mailto:`` ones), scripts and styles
    dropped, entities decoded, at most one blank line in a row, ending in a
    newline. Never raises for malformed HTML (Python's ``html.parser`` is
    lenient)."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    text = "".join(parser.out)
    lines = [line.strip() for line in text.splitlines()]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
