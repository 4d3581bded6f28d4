"""A wallet noted for the watcher's check is taken under a lease (reconciliation.watcher):
the check's claim and its expiry, so a check whose worker died is taken again."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("reconciliation", "0014_work_leases"),
    ]

    operations = [
        migrations.AddField(
            model_name="pendingcheck",
            name="claim",
            field=models.CharField(blank=True, max_length=64),
        ),
        migrations.AddField(
            model_name="pendingcheck",
            name="lease_until",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
