"""Give the roles what the cutover needs: ops run it, finance approvers accept a
reconciliation that found violations, and all three roles see it."""

from django.db import migrations

from revassure import grants

GRANTS = {
    "finance-reviewer": ["cutover.view_cutover", "cutover.view_cutoverstep"],
    "finance-approver": [
        "cutover.view_cutover",
        "cutover.view_cutoverstep",
        "cutover.accept_cutover_reconcile",
    ],
    "ops": ["cutover.view_cutover", "cutover.view_cutoverstep", "cutover.run_cutover"],
}


class Migration(migrations.Migration):
    dependencies = [
        ("cutover", "0001_initial"),
        ("revassure", "0011_roles_see_rejected_webhooks"),
    ]

    operations = [grants.operation(GRANTS)]
