"""Helpers for testing code that sends mail through django-mailer-jobs.

Nothing is imported here on purpose: ``mailer.testing.smtp`` needs the optional
``aiosmtpd`` dependency (``pip install "django-mailer-jobs[testing]"``), and
importing this package must not require it. Import what you need explicitly::

    from mailer.testing.smtp import SMTPTestServer
"""

__all__: list[str] = []  # import from the modules
