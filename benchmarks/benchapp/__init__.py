"""A newsletter site in miniature: issues, subscribers, the admin action."""
