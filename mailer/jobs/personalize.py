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

Segments: ``{% ifrecipient preferences_url %}...{% endifrecipient %}``
(``mailer/templatetags/mailer_recipient.py``) renders its content between
markers, ``[[mj?preferences_url]]...[[/mj?preferences_url]]``. At send time
the content is kept for a reader whose value is true (present, not empty)
and dropped, markers included, for the others; placeholders inside are
filled as everywhere else. A text's segments are resolved before its
placeholders are filled, so a reader's value is never read as a marker.
Each combination of kept and dropped segments is a plain text, made once
per job and combination (:attr:`Personalizer.conditions`); text without
markers takes no other path than before.
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
    "SegmentProblem",
    "find_broken_segment",
    "find_intact",
    "find_mangled",
    "mangled_kind",
    "sample_value",
]

PLACEHOLDER_RE = re.compile(r"\[\[mj:([a-z_][a-z0-9_]*)\]\]")
#: A segment's markers: ``[[mj?field]]`` opens it, ``[[/mj?field]]`` closes it.
SEGMENT_RE = re.compile(r"\[\[(/?)mj\?([a-z_][a-z0-9_]*)\]\]")
#: Placeholders and markers, taken out before looking for damaged ones.
_INTACT_RE = re.compile(r"\[\[(?:mj:|/?mj\?)[a-z_][a-z0-9_]*\]\]")
FIELD_RE = re.compile(r"[a-z_][a-z0-9_]*")
#: How many combinations of kept and dropped segments a text keeps once
#: made; past that (seven or more segment fields), the others are made per
#: message.
MAX_VARIANTS = 64

#: Values every recipient has, whatever the site's context provides.
STANDARD_FIELDS = ("email", "name", "unsubscribe_url")


_OPEN = r"(?:\[|%5b|&\#0*91;|&\#x0*5b;|&lsqb;|&lbrack;|\\u005b|\\x5b)"
_CLOSE = r"(?:\]|%5d|&\#0*93;|&\#x0*5d;|&rsqb;|&rbrack;|\\u005d|\\x5d)"
_COLON = r"(?:\:|%3a|&\#0*58;|&\#x0*3a;|&colon;|\\u003a|\\x3a)"
_QUESTION = r"(?:\?|%3f|&\#0*63;|&\#x0*3f;|&quest;|\\u003f|\\x3f)"
_SLASH = r"(?:/|%2f|&\#0*47;|&\#x0*2f;|&sol;|\\u002f|\\x2f)"
#: What is left of a placeholder or segment marker once something other than
#: this module has touched it: a case variant (``[[MJ:NAME]]``,
#: ``[[/MJ?NAME]]``), an escaped or URL-encoded form
#: (``%5B%5Bmj%3Aname%5D%5D``, ``\u005B``), or a piece of one (``[[mj:na``,
#: ``mj?name]]``). Searched for after the intact ones are taken out.
MANGLED_RE = re.compile(
    rf"{_OPEN}\s*{_OPEN}\s*(?:{_SLASH}\s*)?mj"
    rf"|\bmj\s*(?:{_COLON}|{_QUESTION})\s*[a-z0-9_]*\s*{_CLOSE}",
    re.IGNORECASE,
)
_MARKER_LIKE = re.compile(rf"mj\s*{_QUESTION}|{_SLASH}\s*mj", re.IGNORECASE)


def placeholder(field: str) -> str:
    return f"[[mj:{field}]]"


def segment_markers(field: str) -> tuple[str, str]:
    """The opening and closing marker of a segment on ``field``."""
    return f"[[mj?{field}]]", f"[[/mj?{field}]]"


def find_intact(text: str) -> str | None:
    """The first intact placeholder or segment marker in ``text``
    (``"[[mj:name]]"``, ``"[[mj?field]]"``), or None: for the parts of a
    job's email that are not filled in per reader (its headers)."""
    found = _INTACT_RE.search(text)
    return None if found is None else found.group(0)


def find_mangled(text: str) -> tuple[int, str] | None:
    """The first line (1-based number, text) of ``text`` holding a damaged
    placeholder or segment marker (see :data:`MANGLED_RE`), or None."""
    if MANGLED_RE.search(_INTACT_RE.sub("", text)) is None:
        return None
    for number, line in enumerate(text.splitlines(), start=1):
        if MANGLED_RE.search(_INTACT_RE.sub("", line)):
            return number, line.strip()
    return 0, ""  # the damage spans lines; still refused


def mangled_kind(line: str) -> str:
    """What the damaged thing on ``line`` (from :func:`find_mangled`) was, in
    words: ``"segment marker"`` or ``"placeholder"``."""
    if _MARKER_LIKE.search(_INTACT_RE.sub("", line)):
        return "segment marker"
    return "placeholder"


class SegmentProblem(ValueError):
    """Segment markers that do not pair up: a marker closing nothing, closing
    another field's segment, or never closed. ``number`` and ``line`` are the
    1-based number and the text of the line holding the offending marker,
    ``reason`` says what is wrong with it."""

    def __init__(self, text: str, position: int, reason: str) -> None:
        self.number = text.count("\n", 0, position) + 1
        start = text.rfind("\n", 0, position) + 1
        end = text.find("\n", position)
        self.line = text[start : end if end >= 0 else len(text)].strip()
        self.reason = reason
        super().__init__(f"line {self.number}: {self.line}. {reason}")


def find_broken_segment(text: str) -> SegmentProblem | None:
    """What is wrong with the segment markers of ``text``, or None when they
    pair up (or there are none)."""
    if "mj?" not in text:
        return None
    try:
        _parse_segments(text)
    except SegmentProblem as problem:
        return problem
    return None


def _parse_segments(text: str) -> tuple[list[Any], tuple[str, ...]]:
    """``text`` as a program for :func:`_variant_text`, and its segment
    fields in order of first use. The program is literal text and one
    ``[field, end]`` list per segment, where its opening marker was; ``end``
    is the index of the literal after its closing marker. Raises
    :class:`SegmentProblem`."""
    ops: list[Any] = []
    fields: dict[str, None] = {}
    open_: list[tuple[str, int, int]] = []  # field, index in ops, position
    position = 0
    for match in SEGMENT_RE.finditer(text):
        ops.append(text[position : match.start()])
        closing, field = match.groups()
        if not closing:
            open_.append((field, len(ops), match.start()))
            ops.append([field, 0])
            fields.setdefault(field)
        elif not open_:
            raise SegmentProblem(
                text, match.start(), f"{match.group(0)} closes no segment"
            )
        elif open_[-1][0] != field:
            raise SegmentProblem(
                text,
                match.start(),
                f"{match.group(0)} closes a segment while "
                f"{segment_markers(open_[-1][0])[0]} is still open",
            )
        else:
            ops[open_.pop()[1]][1] = len(ops)
        position = match.end()
    ops.append(text[position:])
    if open_:
        field, _index, start = open_[-1]
        raise SegmentProblem(
            text,
            start,
            f"{segment_markers(field)[0]} is not closed by {segment_markers(field)[1]}",
        )
    return ops, tuple(fields)


def _variant_text(ops: list[Any], shown: Mapping[str, bool]) -> str:
    """The text of a :func:`_parse_segments` program with the segments whose
    field ``shown`` maps to False left out, and no markers."""
    out: list[str] = []
    index, count = 0, len(ops)
    # Bounded: every step moves ``index`` forward (a segment's end lies after
    # it).
    while index < count:
        op = ops[index]
        if type(op) is str:
            out.append(op)
            index += 1
        elif shown[op[0]]:
            index += 1
        else:
            index = op[1]
    return "".join(out)


class RecipientPlaceholders(Mapping):
    """The ``recipient`` seen by a job's templates when they are rendered once.

    Any identifier works (``recipient.first_name``), so sites can pass their
    own per-recipient context; unknown values render empty at send time.
    """

    def __getitem__(self, key: str) -> str:
        if not isinstance(key, str) or not FIELD_RE.fullmatch(key):
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

    def segment(self, field: str, content: str) -> str:
        """``content`` as the segment on ``field``: between its markers, kept
        or dropped per reader at send time (``{% ifrecipient %}``).

        :raises KeyError: ``field`` is not a valid field name."""
        self[field]  # the same names are valid
        if not content:
            return ""
        start, end = segment_markers(field)
        return f"{start}{content}{end}"


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

    def segment(self, field: str, content: str) -> str:
        """``content`` when this sample's value of ``field`` is not empty,
        else nothing: what a reader with these values gets."""
        return content if self[field] else ""


def sample_value(field: str, *, empty: bool = False) -> str:
    """The value a :class:`RecipientSample` gives ``field``: mixed case, a
    non-ASCII letter and spaces, so that filters show. No HTML specials: a
    text template is autoescaped by Django too, where the placeholder's value
    is not, and that difference is not the template's doing."""
    return "" if empty else f"Zoë {field} Quinn-Obi"


class Personalizer:
    """A text split at its placeholders once, joined per recipient cheaply.

    A text with segments (:data:`SEGMENT_RE`) is parsed once too; each
    reader's combination of kept and dropped segments (``key``) is a plain
    ``Personalizer`` made on first use and kept (up to :data:`MAX_VARIANTS`).

    :raises SegmentProblem: the segment markers do not pair up.
    """

    __slots__ = ("text", "pieces", "fields", "escape", "conditions", "_ops", "_made")

    def __init__(
        self, text: str, *, escape: bool = False, segments: bool = True
    ) -> None:
        self.text = text
        self.escape = escape
        #: The segment fields, in order of first use; empty without segments.
        self.conditions: tuple[str, ...] = ()
        self._ops: list[Any] | None = None
        self._made: dict[tuple[bool, ...], Personalizer] | None = None
        # One substring test keeps text without segments, nearly every job,
        # on the plain path. ``segments=False``: a variant, its markers gone
        # (removing them may join text into something marker-like, which
        # must stay text).
        if segments and "mj?" in text and SEGMENT_RE.search(text):
            self._ops, self.conditions = _parse_segments(text)
            self._made = {}
            text = SEGMENT_RE.sub("", text)
        parts = PLACEHOLDER_RE.split(text)
        # re.split with one group alternates: literal, field, literal, ...
        # With segments: those of the text with every segment kept.
        self.pieces = parts
        self.fields = parts[1::2]

    @property
    def is_static(self) -> bool:
        """True when the text has no placeholder and no segment (the same for
        every reader)."""
        return not self.fields and not self.conditions

    def key(self, values: Mapping[str, Any]) -> tuple[bool, ...]:
        """Which segments ``values`` keep, one bool per :attr:`conditions`:
        a value is kept when true (present, not ``""``, ``None``, ``0`` or
        ``False``), as Django's ``{% if %}`` reads it."""
        return tuple([bool(values.get(field)) for field in self.conditions])

    def variant(self, key: tuple[bool, ...]) -> Personalizer:
        """The plain ``Personalizer`` of the text with the segments ``key``
        drops left out (:meth:`key`); ``self`` without segments."""
        if not self.conditions:
            return self
        made = self._made.get(key)
        if made is None:
            text = _variant_text(
                self._ops, dict(zip(self.conditions, key, strict=True))
            )
            made = Personalizer(text, escape=self.escape, segments=False)
            if len(self._made) < MAX_VARIANTS:
                self._made[key] = made
        return made

    def render(self, values: Mapping[str, Any]) -> str:
        """The text with each placeholder replaced by ``values[field]`` as a
        string (``""`` when missing or ``None``), HTML-escaped when made with
        ``escape=True``, and each segment kept or dropped (:meth:`key`)."""
        if self.conditions:
            return self.variant(self.key(values)).render(values)
        if not self.fields:
            return self.pieces[0]
        out = self.pieces[:]
        for index in range(1, len(out), 2):
            value = values.get(out[index])
            value = "" if value is None else str(value)
            out[index] = html.escape(value) if self.escape else value
        return "".join(out)
