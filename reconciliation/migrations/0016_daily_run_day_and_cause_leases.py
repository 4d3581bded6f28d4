"""The daily run's day (one run a day, claimed by the schedule's task or the
sweep that finds it missing) and the lease of the worker computing a break's
probable cause (reconciliation/recovery.py).

On SQLite the run's new column is added in place and the constraint is a unique
index: the run's table is not rebuilt, and its immutability triggers stay."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("reconciliation", "0015_pending_check_leases"),
    ]

    operations = [
        migrations.AddField(
            model_name="break",
            name="cause_claim",
            field=models.CharField(blank=True, max_length=64),
        ),
        migrations.AddField(
            model_name="break",
            name="cause_lease_until",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="reconciliationrun",
            name="scheduled_for",
            field=models.DateField(blank=True, null=True),
        ),
        migrations.AddConstraint(
            model_name="reconciliationrun",
            constraint=models.UniqueConstraint(
                condition=models.Q(("scheduled_for__isnull", False)),
                fields=("scheduled_for",),
                name="one_scheduled_run_per_day",
            ),
        ),
    ]
