"""The web archive: a public "view in browser" page per job, and a list of
a List-Id's jobs.

The page's address is stable and not guessable: the job's id and a keyed
hash of it (``SECRET_KEY``), so the archive of one list does not open every
other job by counting. Templates link to it with ``{{ recipient.archive_url }}``
(a per-recipient placeholder, filled with the same address for every reader
when the email is built). The page shows no personal values: placeholders
are filled neutrally (:data:`NEUTRAL`).
"""

from __future__ import annotations

from django.utils.crypto import constant_time_compare, salted_hmac

from mailer.conf import conf

__all__ = ["NEUTRAL", "archive_url", "job_for_token", "make_archive_token"]

#: What the archive page shows for per-recipient values.
NEUTRAL = {"name": "reader", "email": "you", "unsubscribe_url": ""}


def _tag(job_id: int) -> str:
    return salted_hmac("mailer.archive", str(job_id), algorithm="sha256").hexdigest()[
        :16
    ]


def make_archive_token(job_id: int) -> str:
    """``<id>-<tag>``: the job's public key in archive URLs."""
    return f"{job_id}-{_tag(job_id)}"


def job_for_token(token: str) -> int | None:
    """The job id a token names, or ``None`` for a forged or damaged one."""
    job_id, _sep, tag = token.partition("-")
    if not job_id.isdigit() or not constant_time_compare(tag, _tag(int(job_id))):
        return None
    return int(job_id)


def archive_url(job_id: int) -> str:
    """The job's "view in browser" address: absolute under
    ``MAILER_SITE_URL`` when set (email needs absolute links), else the
    path; empty when it cannot be reversed here (no ``ROOT_URLCONF``, or
    ``mailer.urls`` not included: see :func:`~mailer.unsubscribe.tokens.reverse_here`),
    so mail still goes, as without the unsubscribe link."""
    from mailer.unsubscribe.tokens import ascii_url, reverse_here

    path, _problem = reverse_here(
        "mailer:archive_email",
        [make_archive_token(job_id)],
        what="the archive view's URL",
    )
    if path is None:
        return ""
    base = ascii_url(conf.MAILER_SITE_URL) if conf.MAILER_SITE_URL else ""
    return f"{base}{path}"
