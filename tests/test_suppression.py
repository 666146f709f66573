"""mailer.suppression: the one module that writes and reads the don't-send
list."""

from __future__ import annotations

import pytest

from mailer import suppression
from mailer.models import DontSendEntry, SuppressionReason

pytestmark = pytest.mark.django_db


def test_suppress_stores_the_normalised_address_and_keeps_the_first_reason():
    entry, created = suppression.suppress(
        "Ann@Example.COM", SuppressionReason.BOUNCED, "550 5.1.1 " + "x" * 600
    )
    again, created_again = suppression.suppress(
        "ann@example.com", SuppressionReason.COMPLAINED, "abuse"
    )
    assert (created, created_again) == (True, False)
    assert again.pk == entry.pk
    stored = DontSendEntry.objects.get()
    assert (stored.address, stored.reason) == ("ann@example.com", "bounced")
    assert len(stored.note) == 500


def test_is_suppressed_reads_a_display_name_and_any_case():
    suppression.suppress("ann@example.com", SuppressionReason.MANUAL)
    assert suppression.is_suppressed("Ann <ANN@example.com>")
    assert not suppression.is_suppressed("bob@example.com")


def test_reasons_and_suppressed_ask_in_chunks(monkeypatch):
    monkeypatch.setattr(suppression, "CHUNK", 2)
    for name in ("a", "c", "e"):
        suppression.suppress(f"{name}@example.com", SuppressionReason.BOUNCED)
    asked = [f"{n}@EXAMPLE.com" for n in "abcde"]
    assert suppression.reasons(asked) == {
        "a@example.com": "bounced",
        "c@example.com": "bounced",
        "e@example.com": "bounced",
    }
    assert suppression.suppressed(asked) == {
        "a@example.com",
        "c@example.com",
        "e@example.com",
    }


def test_an_empty_list_costs_one_query_however_many_are_asked(
    django_assert_num_queries,
):
    with django_assert_num_queries(1):
        assert suppression.suppressed(f"r{i}@example.com" for i in range(20_000)) == (
            set()
        )


@pytest.mark.parametrize(
    "reason, kept",
    [
        (None, True),
        (SuppressionReason.UNSUBSCRIBED, True),  # left the newsletters only
        (SuppressionReason.BOUNCED, False),
        (SuppressionReason.COMPLAINED, False),
        (SuppressionReason.MANUAL, False),
    ],
)
def test_without_blocked_keeps_single_mail_to_an_unsubscribed_reader(reason, kept):
    entries = {"ann@example.com": reason} if reason else {}
    assert suppression.without_blocked(["Ann@example.com"], entries) == (
        (["Ann@example.com"], []) if kept else ([], ["Ann@example.com"])
    )


def test_forget_removes_the_entry():
    suppression.suppress("ann@example.com", SuppressionReason.MANUAL)
    assert suppression.forget("ANN@example.com") == 1
    assert suppression.forget("ann@example.com") == 0
    assert not DontSendEntry.objects.exists()
