"""MessageLog.job loses its own index: ``mailer_log_job_report`` (job,
result, created_at) starts with the same column and serves every lookup by
job, so the single-column index only cost one more page written with every
outcome.

The index is dropped by name, found by introspection: ``AlterField`` would
rebuild the whole log table on SQLite to do the same.
"""

import django.db.models.deletion
from django.db import migrations, models


def _job_column(apps):
    model = apps.get_model("mailer", "MessageLog")
    return model, model._meta.get_field("job").column


def drop_job_index(apps, schema_editor):
    model, column = _job_column(apps)
    table = model._meta.db_table
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
    for name, info in constraints.items():
        if (
            info["index"]
            and info["columns"] == [column]
            and not info["primary_key"]
            and not info["unique"]
        ):
            schema_editor.execute(
                schema_editor.sql_delete_index
                % {
                    "table": schema_editor.quote_name(table),
                    "name": schema_editor.quote_name(name),
                }
            )


def create_job_index(apps, schema_editor):
    model, _column = _job_column(apps)
    schema_editor.add_index(
        model, models.Index(fields=["job"], name="mailer_messagelog_job_id")
    )


class Migration(migrations.Migration):
    dependencies = [
        ("mailer", "0006_desk"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="messagelog",
                    name="job",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="mailer.messagejob",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunPython(drop_job_index, create_job_index),
            ],
        ),
    ]
