"""The sending engine's parts: the connection pool, one message's send, the
outcome rules."""
