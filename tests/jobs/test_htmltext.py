"""The text part made from an HTML-only job (mailer/jobs/htmltext.py), as a
table: block elements break lines, links keep their target, scripts and
styles vanish, entities are decoded, blank lines are collapsed."""

from __future__ import annotations

import pytest

from mailer.jobs.htmltext import html_to_text

RULE = "-" * 20


@pytest.mark.parametrize(
    "html, text",
    [
        # Blocks and line breaks.
        ("Hello", "Hello\n"),
        ("", "\n"),
        ("<p>Hello</p><p>World</p>", "Hello\n\nWorld\n"),
        ("<P>Upper case tags</P>", "Upper case tags\n"),
        ("<h1>Title</h1>text", "Title\ntext\n"),
        ("<div><div><div>deep</div></div></div>", "deep\n"),
        ("<blockquote>quoted</blockquote>after", "quoted\nafter\n"),
        ("a<br>b", "a\nb\n"),
        # XHTML's self-closing form, common in email templates: the same one
        # line break as <br>, not a blank line.
        ("a<br/>b", "a\nb\n"),
        ("a<br />b", "a\nb\n"),
        ("line<br><br><br><br>gap", "line\n\ngap\n"),
        ("<p></p><p></p><p></p><p>z</p>", "z\n"),
        ("x<hr>y", f"x\n{RULE}\ny\n"),
        ("x<hr/>y", f"x\n{RULE}\ny\n"),
        # Lists.
        ("<ul><li>one</li><li>two</li></ul>", "* one\n\n* two\n"),
        ("<ol><li>1<li>2</ol>", "* 1\n* 2\n"),
        # Table layouts: cells are separated, rows are lines.
        ("<table><tr><td>Read</td><td>Share</td></tr></table>", "Read Share\n"),
        (
            "<table><tr><th>Name</th><th>Qty</th></tr>"
            "<tr><td>Tea</td><td>2</td></tr></table>",
            "Name Qty\n\nTea 2\n",
        ),
        # Inline elements and white space.
        ("<p>one <b>bold</b> <i>word</i></p>", "one bold word\n"),
        ("a   \n\n  b", "a b\n"),
        ("<pre>  keep\n  this</pre>", "keep this\n"),
        ("  <p>  padded  </p>  ", "padded\n"),
        # Links keep their target, except anchors and mail links.
        ('<a href="https://x.example/a">Read</a>', "Read (https://x.example/a)\n"),
        (
            '<p>See <a href="https://x.example">this</a>.</p>',
            "See this (https://x.example).\n",
        ),
        ('<a href="#top">Top</a>', "Top\n"),
        ('<a href="mailto:ann@example.com">Mail us</a>', "Mail us\n"),
        ('<a href="">empty</a>', "empty\n"),
        ("<a>no target</a>", "no target\n"),
        (
            '<a href="https://a.example"><a href="https://b.example">in</a></a>',
            "in (https://b.example) (https://a.example)\n",
        ),
        # What a reader must not see.
        ("<script>alert(1)</script>Hi", "Hi\n"),
        ("<style>p { color: red }</style><p>x</p>", "x\n"),
        ("<head><title>Title</title></head><body>Body</body>", "Body\n"),
        ("<!-- a comment -->visible", "visible\n"),
        ("<script>never closed", "\n"),
        ("</script>after a stray end tag", "after a stray end tag\n"),
        # Entities.
        ("Fish &amp; chips &lt;3", "Fish & chips <3\n"),
        ("&#8364; &#x20AC; &euro; &eacute;", "€ € € é\n"),
        ("&nbsp;x&nbsp;", "x\n"),
        ("a &unknown; b", "a &unknown; b\n"),
    ],
)
def test_html_to_text(html, text):
    assert html_to_text(html) == text
