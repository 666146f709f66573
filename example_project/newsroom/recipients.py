"""Who gets the email edition: active subscribers plus users whose profile
says so, each address once (case-insensitively; the subscriber entry wins)."""

from __future__ import annotations

from django.contrib.auth import get_user_model

from newsroom.models import Subscriber


def email_edition_readers(obj: object = None) -> list[dict[str, str]]:
    """``[{"email": ..., "name": ...}, ...]`` for ``EmailUpdate(recipients=...)``.

    Two ``values_list`` queries and plain dicts, no model instances: 100,000
    readers take a fraction of a second (``tests/system/test_example.py`` measures it).
    ``obj`` is the issue or article being announced; every one goes to the same
    readers here, but a site could pick readers per section.
    """
    seen: set[str] = set()
    readers: list[dict[str, str]] = []
    # In signup order (the primary key), not the model's alphabetical
    # ordering, which would sort 100,000 rows for nothing.
    subscribers = Subscriber.objects.filter(active=True).order_by("pk")
    for email, name in subscribers.values_list("email", "name"):
        key = email.lower()
        if key not in seen:
            seen.add(key)
            readers.append({"email": email, "name": name})
    users = (
        get_user_model()
        .objects.filter(profile__subscribed=True, is_active=True)
        .exclude(email="")
        .order_by("pk")
    )
    for email, first, last in users.values_list("email", "first_name", "last_name"):
        key = email.lower()
        if key not in seen:
            seen.add(key)
            readers.append({"email": email, "name": f"{first} {last}".strip()})
    return readers
