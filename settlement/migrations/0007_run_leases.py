"""Leases on settlement runs (revassure/leases.py): the process matching a run,
its lease, when the run was last handed to the broker and how many times a
worker took it, so the minute's sweep hands a run whose worker died back to
another worker (the Redis broker never hands its task out again).

On SQLite, adding a column with a default rebuilds the runs' table: a rebuilt
table has lost its triggers, and the rebuild fails while the rows' triggers
name the runs' table. So on SQLite the triggers of 0006 over runs and rows are
dropped first and made again after (PostgreSQL adds the columns in place and
keeps them)."""

from django.db import migrations, models

from revassure.sealing.operations import RefuseChanges

FINISHED = ("completed", "failed")
TRIGGERS = (
    RefuseChanges("settlement_settlementrun", finished=FINISHED),
    RefuseChanges(
        "settlement_settlementrow", finished=FINISHED, parent=("settlement_settlementrun", "run_id")
    ),
)


def drop_triggers(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        for operation in TRIGGERS:
            for statement in operation.backwards_sql("sqlite"):
                schema_editor.execute(statement, params=None)


def make_triggers(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        for operation in TRIGGERS:
            for statement in operation.forwards_sql("sqlite"):
                schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("settlement", "0006_sealed_reports_refuse_changes"),
    ]

    operations = [
        migrations.RunPython(drop_triggers, make_triggers),
        migrations.AddField(
            model_name="settlementrun",
            name="attempts",
            field=models.PositiveSmallIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="settlementrun",
            name="lease_until",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="settlementrun",
            name="queued_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="settlementrun",
            name="worker",
            field=models.CharField(blank=True, max_length=255),
        ),
        migrations.RunPython(make_triggers, drop_triggers),
    ]
