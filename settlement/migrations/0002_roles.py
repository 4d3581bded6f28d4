"""Give the roles what settlement needs: finance reviewers and approvers read the
reports and export them, approvers mark a row explained, ops import statements
(and, through the backfill's own permission, replay what the statements found
missing); everyone in a role sees the reports."""

from django.db import migrations

from revassure import grants

SEE = ["settlement.view_settlementrun", "settlement.view_settlementrow", "settlement.view_followup"]
GRANTS = {
    "finance-reviewer": [*SEE, "settlement.export_settlementrun"],
    "finance-approver": [*SEE, "settlement.export_settlementrun", "settlement.explain_settlementrow"],
    "ops": [*SEE, "settlement.run_settlement"],
}


class Migration(migrations.Migration):
    dependencies = [
        ("settlement", "0001_initial"),
        ("revassure", "0011_roles_see_rejected_webhooks"),
    ]

    operations = [grants.operation(GRANTS)]
