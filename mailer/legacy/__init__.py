"""Compatibility with django-mailer: its public names on our queue and engine
(``api``: ``make_message``, ``send_all``, ``Message.email``, ...), which
``mailer.models`` and ``mailer.engine`` re-export from where django-mailer had
them, and the reading of its database when a site switches
(``django_mailer``: the migrations and the ``mailer.compat`` helpers use it).
"""
