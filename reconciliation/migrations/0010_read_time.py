"""One instant: a run's read mode and read time T0, what each violation was at its
first read, and the candidates the live re-check cleared.

On SQLite, adding a column with a default rebuilds the table: a rebuilt table
has lost its triggers, and the rebuild fails while the violations' triggers
name the runs' table. So on SQLite the immutability triggers of 0002 are
dropped first and made again after (PostgreSQL adds the columns in place and
keeps them)."""

import importlib

from django.db import migrations, models

IMMUTABLE = importlib.import_module("reconciliation.migrations.0002_immutable_reports")


def drop_triggers(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        for statement in IMMUTABLE.SQLITE_REVERSE:
            schema_editor.execute(statement.replace("DROP TRIGGER", "DROP TRIGGER IF EXISTS"), params=None)


def make_triggers(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        for statement in IMMUTABLE.SQLITE:
            schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("reconciliation", "0009_adjustment_settles"),
    ]

    operations = [
        migrations.RunPython(drop_triggers, make_triggers),
        migrations.AddField(
            model_name="reconciliationchunk",
            name="cleared",
            field=models.JSONField(default=list),
        ),
        migrations.AddField(
            model_name="reconciliationrun",
            name="cleared_at_recheck",
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.AddField(
            model_name="reconciliationrun",
            name="read_mode",
            field=models.CharField(
                blank=True,
                choices=[
                    ("point_in_time", "one instant (read time T0)"),
                    ("live", "live (each wallet when its chunk ran)"),
                ],
                max_length=16,
            ),
        ),
        migrations.AddField(
            model_name="reconciliationrun",
            name="read_mode_reason",
            field=models.TextField(blank=True),
        ),
        migrations.AddField(
            model_name="reconciliationrun",
            name="read_time",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="violation",
            name="at_read_time",
            field=models.JSONField(blank=True, null=True),
        ),
        migrations.RunPython(make_triggers, drop_triggers),
    ]
