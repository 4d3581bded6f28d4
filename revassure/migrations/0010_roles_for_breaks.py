"""Give the roles what breaks need: reviewers work on them (assign, take,
acknowledge, note, propose heals), approvers accept differences, ops look."""

from django.db import migrations

from revassure import grants

GRANTS = {
    "finance-reviewer": [
        "reconciliation.view_break",
        "reconciliation.work_break",
        "reconciliation.export_break",
    ],
    "finance-approver": [
        "reconciliation.view_break",
        "reconciliation.accept_break",
        "reconciliation.export_break",
    ],
    "ops": ["reconciliation.view_break"],
}


class Migration(migrations.Migration):
    dependencies = [
        ("revassure", "0009_append_only_freeze_and_flag_history"),
        ("reconciliation", "0006_breaks"),
    ]

    operations = [grants.operation(GRANTS)]
