"""Correlation ids on balance requests and their events; the `demo` trigger of
seeded history runs.

On SQLite, adding a column with a default rebuilds the table, and a rebuilt
table has lost its triggers: the audit trail's append-only triggers are made
again right after (PostgreSQL adds the column in place and keeps them)."""

from django.db import migrations, models

import revassure.logs

TABLE = "reconciliation_requestevent"
SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER IF NOT EXISTS request_event_no_update BEFORE UPDATE ON {TABLE}
        BEGIN SELECT RAISE(ABORT, 'the request audit trail is append-only'); END""",
    f"""CREATE TRIGGER IF NOT EXISTS request_event_no_delete BEFORE DELETE ON {TABLE}
        BEGIN SELECT RAISE(ABORT, 'the request audit trail is append-only'); END""",
]


def keep_triggers(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        for statement in SQLITE_TRIGGERS:
            schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    dependencies = [("reconciliation", "0006_breaks")]

    operations = [
        migrations.AddField(
            model_name="balancerequest",
            name="correlation_id",
            field=models.CharField(
                blank=True, default=revassure.logs.correlation_id_or_blank, max_length=128
            ),
        ),
        migrations.AddField(
            model_name="requestevent",
            name="correlation_id",
            field=models.CharField(
                blank=True, default=revassure.logs.correlation_id_or_blank, max_length=128
            ),
        ),
        migrations.RunPython(keep_triggers, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="reconciliationrun",
            name="trigger",
            field=models.CharField(
                choices=[
                    ("command", "Command"),
                    ("admin", "Admin"),
                    ("schedule", "Schedule"),
                    ("api", "API"),
                    ("demo", "seeded demo history"),
                ],
                max_length=16,
            ),
        ),
    ]
