"""Deprecated import path: the admin action is ``mailer.jobs.actions``."""

import warnings

from mailer.jobs.actions import (  # noqa: F401 - re-exported
    EmailUpdate,
    EmailUpdateAdminMixin,
    email_update_action,
    register_audience,
)

warnings.warn(
    "mailer.actions moved to mailer.jobs.actions; import EmailUpdate and "
    "EmailUpdateAdminMixin from there. This alias will be removed in a later release.",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = [
    "EmailUpdate",
    "EmailUpdateAdminMixin",
    "email_update_action",
    "register_audience",
]
