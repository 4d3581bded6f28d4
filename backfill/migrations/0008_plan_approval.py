"""Four eyes on backfill plans: who approved a dry run's plan, when and why, and the
permission to approve one (ops and finance approvers hold it: backfill/apps.py)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("backfill", "0007_webhook_drain"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="datamigration",
            options={
                "ordering": ["-created_at", "-id"],
                "permissions": [("approve_plan", "Can approve a backfill plan someone else made")],
            },
        ),
        migrations.AddField(
            model_name="datamigration",
            name="plan_approval_reason",
            field=models.TextField(blank=True),
        ),
        migrations.AddField(
            model_name="datamigration",
            name="plan_approved_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="datamigration",
            name="plan_approved_by",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
    ]
