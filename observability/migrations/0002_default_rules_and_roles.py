"""The default alert rules, on by default. (What each role may do with alerts was
granted here once; it is declared in observability/apps.py and synced after
migrate: revassure/grants.py.)"""

from django.db import migrations

BOTH = ["email", "webhook"]
RULES = {
    "violations_found": (0, "The last completed full run has more than N violations."),
    "drift_above": (1000, "The last completed full run's total absolute drift is above N points."),
    "liability_mismatch": (0, "Sum of wallets differs from sum of ledgers by more than N points."),
    "reconciliation_stale": (26, "No completed full run for more than N hours."),
    "job_failed": (0, "A reconciliation run or a data migration ended failed (it could not run)."),
    "webhooks_unhealthy": (0, "More than N webhook deliveries quarantined or failed in the last hour."),
    "freeze_too_long": (4, "The freeze has been on for more than N hours."),
    "approvals_waiting": (24, "A balance request has waited for a decision for more than N hours."),
    "migration_stalled": (15, "A running migration has made no progress for N minutes."),
    "could_not_evaluate": (0, "An evaluation could not read the data of a rule."),
    "too_many_alerts": (50, "One evaluation would open more than N alerts: one summary instead."),
}


def forwards(apps, schema_editor):
    AlertRule = apps.get_model("observability", "AlertRule")
    for name, (threshold, description) in RULES.items():
        AlertRule.objects.get_or_create(
            name=name, defaults={"threshold": threshold, "description": description, "channels": BOTH}
        )


def backwards(apps, schema_editor):
    apps.get_model("observability", "AlertRule").objects.filter(name__in=RULES, alerts__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("observability", "0001_alerts"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
