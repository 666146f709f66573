"""Compatibility with django-mailer: reading its database when a site switches.

Nothing here is imported by the sending path; the migrations and the
``mailer.compat`` helpers use it.
"""
