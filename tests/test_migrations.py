"""The migrations match the models, and build the indexes the queue relies on."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

# makemigrations checks the migration history in the database.
pytestmark = pytest.mark.django_db


def test_no_model_change_is_missing_a_migration():
    out = StringIO()
    # Our apps only: django-chroniker, with BigAutoField as the project's
    # default, reports migrations of its own that are not ours to make.
    call_command(
        "makemigrations", "mailer", "testapp", "--check", "--dry-run", stdout=out
    )
    assert out.getvalue().startswith("No changes detected")


def test_the_migrated_queue_has_its_claim_index_and_constraints():
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "mailer_message")
    claim = constraints["mailer_message_claim"]
    assert claim["index"] and claim["columns"] == ["priority", "due_at", "id"]
    assert constraints["mailer_message_claim_token"]["columns"] == ["claim_token"]
    assert constraints["mailer_one_message_per_job_recipient"]["unique"]


# Outside a transaction: SQLite's schema editor refuses to run inside one.
@pytest.mark.django_db(transaction=True)
def test_the_migration_can_be_reversed():
    out = StringIO()
    call_command("sqlmigrate", "mailer", "0001", "--backwards", stdout=out)
    assert 'DROP TABLE "mailer_message"' in out.getvalue()


def _log_indexes() -> dict[str, list[str]]:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(
            cursor, "mailer_messagelog"
        )
    return {name: c["columns"] for name, c in constraints.items() if c["index"]}


@pytest.mark.django_db(transaction=True)
def test_the_log_is_found_by_job_through_the_report_index_alone():
    """0007 drops MessageLog.job's own index (the report's index starts with
    job) by name, without rebuilding the table; going back makes one again."""
    indexes = _log_indexes()
    assert indexes["mailer_log_job_report"] == ["job_id", "result", "created_at"]
    assert ["job_id"] not in indexes.values()
    try:
        call_command("migrate", "mailer", "0006", verbosity=0)
        assert ["job_id"] in _log_indexes().values()
    finally:
        call_command("migrate", "mailer", verbosity=0)
    assert ["job_id"] not in _log_indexes().values()
