"""The sending engine's parts, split along their seams: the connection pool
(``pool``), one message's SMTP exchange (``transport``), building one
message (``build``), provider quotas (``quotas``), the relay's own trouble
(``relaypause``), per-recipient refusals (``partial``) and the SMTP
extensions a message needs (``extensions``); the claim, outcome rules and
records live beside it in ``mailer.claim``, ``mailer.outcomes`` and
``mailer.records``."""
