"""The sending engine's parts, split along their seams: the connection pool
(``pool``), one message's SMTP exchange (``transport``), building one
message (``build``), provider quotas (``quotas``), the relay's own trouble
(``relaypause``), per-recipient refusals (``partial``) and the SMTP
extensions a message needs (``extensions``), around the send loop itself
(``engine``): claims and leases (``claim``), what a reply means
(``outcomes``), the outcome's database write (``records``; on
PostgreSQL committed while the next envelope goes out: ``writebehind``), the SMTP
connection of a run (``smtp``), a queued email's bytes (``message``) and
DKIM signing (``dkim``).

Nothing is exported from the package itself: import from the modules
(``mailer.sending.engine.send_queued``); django-mailer's path
``mailer.engine`` re-exports the send loop."""

__all__: list[str] = []  # import from the modules
