"""Lists, double opt-in signup, a preference centre and per-list unsubscribe.

An optional sub-app (app label ``mailer_subscriptions``), in the manner of
``django.contrib.sites``: add ``"mailer.subscriptions"`` to
``INSTALLED_APPS`` and ``path("news/", include("mailer.subscriptions.urls"))``
to the URLconf. Nothing in the core imports it; it uses the core's public
functions (``mailer.queue.enqueue``, ``mailer.jobs.create_job``,
``mailer.suppression.unsubscribe``).

Modules: ``models`` (lists, subscriptions, consent wording, erased
addresses), ``tokens`` (signed links, one salt per purpose), ``services``
(subscribe, confirm, leave, erase: what views, admin and commands call),
``audience`` (sending a job to lists), ``importing`` (CSV and model import),
``views`` / ``forms`` / ``urls`` / ``admin`` (Django glue).
"""

__all__: list[str] = []  # import from the modules
