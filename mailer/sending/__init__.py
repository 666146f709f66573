"""The sending side of the engine, split along its seams: one message's SMTP
exchange (``transport``); the claim, outcome rules and records live beside it
in ``mailer.claim``, ``mailer.outcomes`` and ``mailer.records``."""
