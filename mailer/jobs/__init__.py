"""Newsletters: one ``MessageJob`` rendered once, expanded into one message
per reader.

Where things are: making, scheduling, pausing and cancelling jobs in
``services``; the expansion that ``process_mail_jobs`` runs in ``expand``;
headers and bodies in ``compose``; per-reader values in ``personalize``;
the admin's "Send email update" action in ``actions``; the job's report in
``report`` and ``progress``; the web archive in ``archive`` and ``views``;
the template lint in ``templatecheck``; the text part from HTML in
``htmltext``.

The public names below are importable from ``mailer.jobs`` itself; they load
lazily, so importing a sub-module does not import the models.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "RenderedEmail",
    "cancel_jobs",
    "create_job",
    "delete_jobs",
    "expand_job",
    "pause_jobs",
    "render_email",
    "reschedule_jobs",
    "resume_jobs",
    "retry_failed",
]

_HOMES = {name: "mailer.jobs.services" for name in __all__}
_HOMES["expand_job"] = "mailer.jobs.expand"


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'mailer.jobs' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(_HOMES[name]), name)
