"""django-mailer's import path for the send loop, kept for sites that switch.

``from mailer.engine import send_all`` (django-mailer's API) keeps working;
the engine itself is ``mailer.sending.engine``.
"""

from mailer.sending.engine import (  # noqa: F401 - re-exported
    purge_log,
    retry_deferred,
    send_all,
    send_loop,
    send_queued,
)

__all__ = ["purge_log", "retry_deferred", "send_all", "send_loop", "send_queued"]
