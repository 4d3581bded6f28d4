"""A settlement row's run has no index of its own: the indexes on (run,
outcome) and (run, entry id) lead with it, and each of a statement's rows
kept one more index up to date for nothing.

Only the index goes (same name on SQLite and PostgreSQL): on SQLite Django's
AlterField would rebuild the table, and a rebuilt table loses the triggers
that refuse changes to a sealed run's rows."""

import django.db.models.deletion
from django.db import migrations, models

INDEX = "settlement_settlementrow_run_id_faeeb74a"


class Migration(migrations.Migration):
    dependencies = [
        ("settlement", "0007_run_leases"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="settlementrow",
                    name="run",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="results",
                        to="settlement.settlementrun",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    f'DROP INDEX "{INDEX}"',
                    f'CREATE INDEX "{INDEX}" ON "settlement_settlementrow" ("run_id")',
                ),
            ],
        ),
    ]
