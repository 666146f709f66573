"""mailer.door: the header-injection and size rules, as a table. The doors
that call them (single mail, job mail, the composer) are tested in
tests/test_queue.py, tests/jobs/test_services.py and tests/jobs/test_compose.py."""

from __future__ import annotations

import pytest
from django.utils.translation import gettext_lazy

from mailer.door import check_header, check_headers, check_size, has_line_break
from mailer.exceptions import HeaderInjection, MessageTooLarge


@pytest.mark.parametrize(
    "text, broken",
    [
        ("plain", False),
        ("", False),
        ("tab\tis fine", False),
        ("café ünïcode", False),
        ("line\nfeed", True),
        ("carriage\rreturn", True),
        ("crlf\r\nBcc: x@example.com", True),
        ("trailing\n", True),
        ("\rleading", True),
        ("unicode line separator\u2028is not CR or LF", False),
    ],
)
def test_has_line_break(text, broken):
    assert has_line_break(text) is broken


@pytest.mark.parametrize(
    "name, value",
    [
        ("Subject", "Hello\r\nBcc: victim@example.com"),
        ("Subject", "Hello\nBcc: victim@example.com"),
        ("Reply-To", "a@example.com\rX: y"),
        ("X-Evil\r\nBcc", "value"),
        ("Subject", gettext_lazy("lazy\ntext")),
    ],
)
def test_a_line_break_in_a_header_name_or_value_is_refused(name, value):
    with pytest.raises(HeaderInjection) as error:
        check_header(name, value)
    assert str(error.value).startswith(f"Header {name!r} contains a line break")


@pytest.mark.parametrize(
    "name, value",
    [("Subject", "Issue 7"), ("X-Count", 3), ("Subject", gettext_lazy("lazy"))],
)
def test_a_clean_header_passes(name, value):
    assert check_header(name, value) is None


def test_check_headers_stops_at_the_first_bad_pair():
    with pytest.raises(HeaderInjection, match="'X-Two'"):
        check_headers([("X-One", "fine"), ("X-Two", "bad\n"), ("X-Three", "bad\r")])


@pytest.mark.parametrize(
    "limit, size, refused",
    [(1000, 999, False), (1000, 1000, False), (1000, 1001, True), (0, 1, True)],
)
def test_the_size_limit_is_inclusive(settings, limit, size, refused):
    settings.MAILER_MAX_MESSAGE_BYTES = limit
    if refused:
        with pytest.raises(MessageTooLarge, match=f"{size:,} bytes"):
            check_size(size)
    else:
        assert check_size(size) is None
