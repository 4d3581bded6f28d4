"""Rules with a second number (webhooks_unhealthy: rejected signatures in the
last hour, default 20), and the rule for breaks left open too long (default 7 days)."""

from django.db import migrations, models

WEBHOOKS = "More than N webhook deliveries quarantined or failed in the last hour, or more webhook requests rejected for their signature than the second threshold (default 20)."
BREAK = "A break has been open for more than N days."


def forwards(apps, schema_editor):
    AlertRule = apps.get_model("observability", "AlertRule")
    AlertRule.objects.filter(name="webhooks_unhealthy", second_threshold__isnull=True).update(
        second_threshold=20, description=WEBHOOKS
    )
    AlertRule.objects.get_or_create(
        name="break_older_than",
        defaults={"threshold": 7, "description": BREAK, "channels": ["email", "webhook"]},
    )


def backwards(apps, schema_editor):
    apps.get_model("observability", "AlertRule").objects.filter(
        name="break_older_than", alerts__isnull=True
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("observability", "0002_default_rules_and_roles"),
    ]

    operations = [
        migrations.AddField(
            model_name="alertrule",
            name="second_threshold",
            field=models.BigIntegerField(
                blank=True, help_text="Only for rules whose description names a second threshold.", null=True
            ),
        ),
        migrations.AlterField(
            model_name="alertrule",
            name="name",
            field=models.CharField(
                choices=[
                    ("violations_found", "violations found"),
                    ("drift_above", "drift above a threshold"),
                    ("liability_mismatch", "liability mismatch"),
                    ("reconciliation_stale", "reconciliation stale"),
                    ("job_failed", "job failed"),
                    ("webhooks_unhealthy", "webhooks unhealthy"),
                    ("freeze_too_long", "freeze on too long"),
                    ("approvals_waiting", "approvals waiting"),
                    ("migration_stalled", "migration stalled"),
                    ("break_older_than", "break older than N days"),
                    ("could_not_evaluate", "could not evaluate"),
                    ("too_many_alerts", "too many alerts at once"),
                ],
                max_length=32,
                unique=True,
            ),
        ),
        migrations.RunPython(forwards, backwards),
    ]
