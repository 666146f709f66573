"""Bounces and complaints that arrive after the SMTP session.

``verp.py`` puts a signed token for each message into its envelope sender,
``parse.py`` reads delivery status notifications (RFC 3464) and complaint
reports (RFC 5965), ``readers.py`` fetches them from IMAP, a Maildir or
standard input, and ``process.py`` turns each into log rows and don't-send
entries. ``manage.py process_bounces`` drives them.
"""

__all__: list[str] = []  # import from the modules
