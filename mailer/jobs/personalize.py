"""Per-recipient values without re-rendering the newsletter per recipient.

A job's templates are rendered once, with a ``recipient`` object whose
attributes render as placeholders: ``{{ recipient.name }}`` becomes
``[[mj:name]]``. At send time each placeholder is replaced by that recipient's
value, HTML-escaped in the HTML part. The placeholder is plain ASCII that
Django's autoescaping leaves alone, and readable in the stored job.

Template filters and tags applied to a per-recipient value would act on the
placeholder, not on the value: ``{{ recipient.name|upper }}`` renders
``[[MJ:NAME]]``, which no longer is a placeholder and would reach every reader
as it is. Per-recipient values are inserted as they are, and ``services.py``
refuses content that uses them any other way (``find_mangled`` here, and a
comparison with a render using sample values): rendering the whole template
once per recipient would cost milliseconds per reader instead of
microseconds.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "Personalizer",
    "RecipientPlaceholders",
    "RecipientSample",
    "find_mangled",
    "sample_value",
]

PLACEHOLDER_RE = re.compile(r"\[\[mj:([a-z_][a-z0-9_]*)\]\]")

#: Values every recipient has, whatever the site's context provides.
STANDARD_FIELDS = ("email", "name", "unsubscribe_url")


_OPEN = r"(?:\[|%5b|&\#0*91;|&\#x0*5b;|&lsqb;|&lbrack;|\\u005b|\\x5b)"
_CLOSE = r"(?:\]|%5d|&\#0*93;|&\#x0*5d;|&rsqb;|&rbrack;|\\u005d|\\x5d)"
_COLON = r"(?:\:|%3a|&\#0*58;|&\#x0*3a;|&colon;|\\u003a|\\x3a)"
#: What is left of a placeholder once something other than this module has
#: touched it: a case variant (``[[MJ:NAME]]``, ``[[Mj:Name]]``), an escaped
#: or URL-encoded form (``%5B%5Bmj%3Aname%5D%5D``, ``\u005B``), or a piece of
#: one (``[[mj:na``, ``mj:name]]``). Searched for after the real placeholders
#: are taken out.
MANGLED_RE = re.compile(
    rf"{_OPEN}\s*{_OPEN}\s*mj|\bmj\s*{_COLON}\s*[a-z0-9_]*\s*{_CLOSE}",
    re.IGNORECASE,
)


def placeholder(field: str) -> str:
    return f"[[mj:{field}]]"


def find_mangled(text: str) -> tuple[int, str] | None:
    """The first line (1-based number, text) of ``text`` holding a damaged
    placeholder (see :data:`MANGLED_RE`), or None."""
    if MANGLED_RE.search(PLACEHOLDER_RE.sub("", text)) is None:
        return None
    for number, line in enumerate(text.splitlines(), start=1):
        if MANGLED_RE.search(PLACEHOLDER_RE.sub("", line)):
            return number, line.strip()
    return 0, ""  # the damage spans lines; still refused


class RecipientPlaceholders(Mapping):
    """The ``recipient`` seen by a job's templates when they are rendered once.

    Any identifier works (``recipient.first_name``), so sites can pass their
    own per-recipient context; unknown values render empty at send time.
    """

    def __getitem__(self, key: str) -> str:
        if not isinstance(key, str) or not re.fullmatch(r"[a-z_][a-z0-9_]*", key):
            raise KeyError(key)
        return placeholder(key)

    def __getattr__(self, key: str) -> str:
        if key.startswith("__"):
            raise AttributeError(key)
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def __iter__(self):
        return iter(STANDARD_FIELDS)

    def __len__(self) -> int:
        return len(STANDARD_FIELDS)

    def __str__(self) -> str:
        return placeholder("email")


class RecipientSample(RecipientPlaceholders):
    """A ``recipient`` with real-looking values in place of placeholders.

    Rendering a job's template with it, and comparing with the placeholders
    filled in afterwards, shows whether the template uses per-recipient values
    only as they are: any filter, condition or loop on them makes the two
    differ."""

    def __init__(self, empty: bool = False) -> None:
        self.empty = empty

    def __getitem__(self, key: str) -> str:
        super().__getitem__(key)  # the same names are valid
        return sample_value(key, empty=self.empty)

    def __str__(self) -> str:
        return sample_value("email", empty=self.empty)


def sample_value(field: str, *, empty: bool = False) -> str:
    """The value a :class:`RecipientSample` gives ``field``: mixed case, a
    non-ASCII letter and spaces, so that filters show. No HTML specials: a
    text template is autoescaped by Django too, where the placeholder's value
    is not, and that difference is not the template's doing."""
    return "" if empty else f"Zoë {field} Quinn-Obi"


class Personalizer:
    """A text split at its placeholders once, joined per recipient cheaply."""

    __slots__ = ("pieces", "fields", "escape")

    def __init__(self, text: str, *, escape: bool = False) -> None:
        parts = PLACEHOLDER_RE.split(text)
        # re.split with one group alternates: literal, field, literal, ...
        self.pieces = parts
        self.fields = parts[1::2]
        self.escape = escape

    @property
    def is_static(self) -> bool:
        """True when the text has no placeholder (the same for every reader)."""
        return not self.fields

    def render(self, values: Mapping[str, Any]) -> str:
        """The text with each placeholder replaced by ``values[field]`` as a
        string (``""`` when missing or ``None``), HTML-escaped when made with
        ``escape=True``."""
        if not self.fields:
            return self.pieces[0]
        out = self.pieces[:]
        for index in range(1, len(out), 2):
            value = values.get(out[index])
            value = "" if value is None else str(value)
            out[index] = html.escape(value) if self.escape else value
        return "".join(out)
