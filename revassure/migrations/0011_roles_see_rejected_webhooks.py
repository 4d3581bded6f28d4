"""Every role that sees webhook deliveries sees the requests refused for their signature too."""

from django.db import migrations

from revassure import grants

GRANTS = {
    "finance-reviewer": ["backfill.view_rejectedwebhook"],
    "finance-approver": ["backfill.view_rejectedwebhook"],
    "ops": ["backfill.view_rejectedwebhook"],
}


class Migration(migrations.Migration):
    dependencies = [
        ("revassure", "0010_roles_for_breaks"),
        ("backfill", "0006_rejected_webhooks_and_correlation_ids"),
    ]

    operations = [grants.operation(GRANTS)]
