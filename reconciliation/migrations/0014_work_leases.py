"""Leases on a run's work (revassure/leases.py): the lister's claim and lease on
the run, the worker and lease of each chunk and when it was last queued, and
how many chunks each machine counted (gathered at the seal).

As in 0010, on SQLite the immutability triggers of 0002 are dropped before
the run's table is rebuilt and made again after (PostgreSQL adds the columns
in place and keeps them)."""

import importlib

from django.db import migrations, models

READ_TIME = importlib.import_module("reconciliation.migrations.0010_read_time")


class Migration(migrations.Migration):
    dependencies = [
        ("reconciliation", "0013_correction_of_malformed_entries"),
    ]

    operations = [
        migrations.RunPython(READ_TIME.drop_triggers, READ_TIME.make_triggers),
        migrations.AddField(
            model_name="reconciliationchunk",
            name="lease_until",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="reconciliationchunk",
            name="queued_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="reconciliationchunk",
            name="worker",
            field=models.CharField(blank=True, max_length=255),
        ),
        migrations.AddField(
            model_name="reconciliationrun",
            name="checked_by",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.AddField(
            model_name="reconciliationrun",
            name="lease_until",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="reconciliationrun",
            name="lister",
            field=models.CharField(blank=True, max_length=64),
        ),
        migrations.RunPython(READ_TIME.make_triggers, READ_TIME.drop_triggers),
    ]
