"""How the editor's desk writes a count: grouped in the current locale's
way ("5,000" in English), on the confirmation page, the job list, the
report, its live counts and its charts alike."""

from __future__ import annotations

from django.utils.formats import number_format

__all__ = ["grouped"]


def grouped(value: int | float | str | None) -> str:
    """``value`` with the active language's thousand separator
    (``number_format(..., force_grouping=True)``): ``5000`` -> ``"5,000"``
    in English, whatever ``USE_THOUSAND_SEPARATOR`` says; ``None`` -> ``""``.
    Django's ``intcomma`` does the same but needs ``django.contrib.humanize``
    in ``INSTALLED_APPS``, which this app does not ask of a site."""
    if value is None or value == "":
        return ""
    return number_format(value, force_grouping=True)
