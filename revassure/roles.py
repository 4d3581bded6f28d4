"""The staff roles, as Django groups, and what each may do."""

REVIEWER = "finance-reviewer"
APPROVER = "finance-approver"
OPS = "ops"

# app_label.codename of each permission a role holds.
ROLE_PERMISSIONS = {
    REVIEWER: [
        "reconciliation.view_reconciliationrun",
        "reconciliation.view_violation",
        "reconciliation.export_reconciliationrun",
    ],
    APPROVER: [
        "reconciliation.view_reconciliationrun",
        "reconciliation.view_violation",
        "reconciliation.export_reconciliationrun",
    ],
    OPS: [
        "reconciliation.view_reconciliationrun",
        "reconciliation.view_violation",
        "reconciliation.run_reconciliation",
        "revassure.view_featureflag",
        "revassure.change_featureflag",
        "revassure.view_featureflagchange",
    ],
}
