"""Compatibility with django-mailer, for sites that switch.

- ``api``: django-mailer's functions and methods under their own names
  (``send_all``, ``send_loop``, ``get_priority``, ``Message.email``,
  ``Message.defer()``, ``MAILER_ERROR_HANDLER``), which ``mailer``,
  ``mailer.engine``, the models and the querysets re-export;
- ``django_mailer``: reading django-mailer's tables (its pickled
  messages) into ours, run by the migrations.
"""

__all__: list[str] = []  # import from the modules
