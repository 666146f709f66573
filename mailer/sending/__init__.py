"""The sending engine's parts, split along their seams: the connection pool
(``pool``), one message's SMTP exchange (``transport``), building one
message (``build``); the claim, outcome rules and records live beside it in
``mailer.claim``, ``mailer.outcomes`` and ``mailer.records``."""
