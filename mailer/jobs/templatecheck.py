"""Refusing job templates that use per-recipient values other than as they are.

A job's templates are rendered once, with placeholders for per-recipient
values (``personalize.py``). A filter, condition or loop on such a value acts
on the placeholder: ``{{ recipient.name|upper }}`` sends every reader
"Good morning [[MJ:NAME]],". Rendering the templates once per reader instead
would cost milliseconds per message where filling placeholders costs
microseconds, so such templates are refused, with a message that names the
template and the line, when the editor picks the action (``render_email``).

The one condition that works is ``{% ifrecipient field %}`` (``{% load
mailer_recipient %}``): it renders a segment kept or dropped per reader at
send time, and the comparison below sees it do what readers get. Markers
that do not pair up are refused, naming the line of the output.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from django.template.loader import get_template, render_to_string

from mailer.exceptions import TemplateProblem
from mailer.jobs.personalize import (
    Personalizer,
    RecipientSample,
    SegmentProblem,
    sample_value,
)

__all__ = ["SEGMENTS_PAIR", "USE_AS_IS", "check_recipient_use"]

USE_AS_IS = (
    "Per-recipient values can only be inserted as they are, e.g. "
    "{{ recipient.name }}: filters, conditions and loops on recipient values "
    "are not supported (they would act on the placeholder, not on each reader's "
    "value). To show a part only to readers who have a value, use "
    "{% load mailer_recipient %}{% ifrecipient name %}...{% endifrecipient %}."
)
SEGMENTS_PAIR = (
    "Each {% ifrecipient %} segment must be closed by its {% endifrecipient %} "
    "in the same output, and must not be cut or changed by a filter."
)


def check_recipient_use(
    template_name: str,
    ctx: Mapping[str, Any],
    rendered: str,
    *,
    escape: bool,
    kind: str,
) -> None:
    """Refuse a template that does anything with a per-recipient value but
    insert it (``{{ recipient.name|upper }}``, ``{% if recipient.name %}``).

    The template is rendered again with sample values (and once more with
    empty ones) in place of the placeholders, and compared with the
    placeholders filled in afterwards, which is what readers get: any
    difference is a use this app cannot personalise. Costs two more renders
    of the template per object, once, in the editor's request. Raises
    :class:`TemplateProblem` naming the template and the line."""
    try:
        personalizer = Personalizer(rendered, escape=escape)
    except SegmentProblem as problem:
        raise TemplateProblem(
            f"The {kind} template {template_name!r} holds a broken per-recipient "
            f"segment; line {problem.number} of its output reads: {problem.line}. "
            f"{problem.reason}. {SEGMENTS_PAIR}"
        ) from None
    fields = (*personalizer.fields, *personalizer.conditions)
    for empty in (False, True):
        direct = render_to_string(
            template_name, {**ctx, "recipient": RecipientSample(empty=empty)}
        )
        values = {f: sample_value(f, empty=empty) for f in fields}
        filled = personalizer.render(values)
        if direct == filled:
            continue
        for source_name, number, line in _suspect_lines(template_name):
            raise TemplateProblem(
                f"The {kind} template {source_name!r} uses a per-recipient value "
                f"in a way that cannot be personalised, line {number}: {line}. "
                f"{USE_AS_IS}"
            )
        if render_to_string(template_name, ctx) != rendered:
            # The template renders differently each time ({% now %} to the
            # microsecond, the random filter): the comparison proves nothing; the
            # damaged-placeholder check (check_placeholders) still applies.
            return
        number = _first_difference(direct.splitlines(), filled.splitlines())
        lines = rendered.splitlines()
        shown = lines[number - 1].strip() if number <= len(lines) else ""
        raise TemplateProblem(
            f"The {kind} template {template_name!r} uses a per-recipient value in a "
            f"way that cannot be personalised; line {number} of its output reads: "
            f"{shown}. {USE_AS_IS}"
        )


def _first_difference(a: list[str], b: list[str]) -> int:
    """The 1-based number of the first line where ``a`` and ``b`` differ."""
    for number, (line_a, line_b) in enumerate(zip(a, b, strict=False), start=1):
        if line_a != line_b:
            return number
    return min(len(a), len(b)) + 1


#: A template construct that uses ``recipient`` other than ``{{ recipient }}``
#: or ``{{ recipient.field }}``: a filter on it, or any tag.
_SUSPECT = re.compile(
    r"\{\{(?!\s*recipient(?:\.[a-z_][a-z0-9_]*)?\s*\}\})(?:(?!\}\}).)*?\brecipient\b"
    r"(?:(?!\}\}).)*\}\}"
    r"|\{%(?:(?!%\}).)*?\brecipient\b(?:(?!%\}).)*%\}"
)
_REFERENCED = re.compile(r"""\{%\s*(?:extends|include)\s+(["'])(.+?)\1""")


def _suspect_lines(template_name: str) -> Iterator[tuple[str, int, str]]:
    """(template, line number, construct) for each suspect use of
    ``recipient`` in the source of ``template_name`` and of the templates it
    names literally in ``{% extends %}`` / ``{% include %}``, in that order."""
    pending, seen = [template_name], set()
    while pending and len(seen) < 50:
        name = pending.pop(0)
        if name in seen:
            continue
        seen.add(name)
        try:
            source = get_template(name).template.source
        except Exception:  # noqa: BLE001 - another backend, or no source: skip
            continue
        for number, line in enumerate(source.splitlines(), start=1):
            for match in _SUSPECT.finditer(line):
                yield name, number, match.group(0)
        pending.extend(match.group(2) for match in _REFERENCED.finditer(source))
