"""The sending side of the engine, one concern per module: provider quotas
(``quotas``), the relay's own trouble (``relaypause``), per-recipient
refusals (``partial``) and the SMTP extensions a message needs
(``extensions``)."""
