"""``{% load mailer_numbers %}``: ``{{ count|grouped }}`` writes a count as
the rest of the desk does (:func:`mailer.numbers.grouped`)."""

from __future__ import annotations

from django import template

from mailer.numbers import grouped as _grouped

register = template.Library()


@register.filter(is_safe=False)
def grouped(value: int | float | str | None) -> str:
    """``5000|grouped`` -> ``"5,000"`` in English (the active language's
    thousand separator)."""
    return _grouped(value)
