"""One-click unsubscribe (RFC 8058): signed tokens and the links built from
them in ``tokens``, the views in ``views``. Recording who unsubscribed is the
don't-send list's work (``mailer.suppression``).

``make_token`` and ``read_token`` are importable from ``mailer.unsubscribe``
itself; they load lazily.
"""

from __future__ import annotations

from typing import Any

__all__ = ["UnsubscribeRequest", "make_token", "read_token"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'mailer.unsubscribe' has no attribute {name!r}")
    from mailer.unsubscribe import tokens

    return getattr(tokens, name)
