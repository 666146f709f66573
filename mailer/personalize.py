"""Per-recipient values without re-rendering the newsletter per recipient.

A job's templates are rendered once, with a ``recipient`` object whose
attributes render as placeholders: ``{{ recipient.name }}`` becomes
``[[mj:name]]``. At send time each placeholder is replaced by that recipient's
value, HTML-escaped in the HTML part. The placeholder is plain ASCII that
Django's autoescaping leaves alone, and readable in the stored job.

Template filters applied to a per-recipient value act on the placeholder, not
on the value (``{{ recipient.name|upper }}`` cannot work); per-recipient values
are inserted as they are.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from typing import Any

PLACEHOLDER_RE = re.compile(r"\[\[mj:([a-z_][a-z0-9_]*)\]\]")

#: Values every recipient has, whatever the site's context provides.
STANDARD_FIELDS = ("email", "name", "unsubscribe_url")


def placeholder(field: str) -> str:
    return f"[[mj:{field}]]"


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
        return not self.fields

    def render(self, values: Mapping[str, Any]) -> str:
        if not self.fields:
            return self.pieces[0]
        out = self.pieces[:]
        for index in range(1, len(out), 2):
            value = values.get(out[index])
            value = "" if value is None else str(value)
            out[index] = html.escape(value) if self.escape else value
        return "".join(out)


def fields_used(*texts: str) -> set[str]:
    return {field for text in texts for field in PLACEHOLDER_RE.findall(text)}
