"""Snapshots: ops take them (and verify them again); every role may look at them and at restores."""

from django.db import migrations

from revassure import grants

GRANTS = {
    "finance-reviewer": ["snapshots.view_snapshot", "snapshots.view_restore"],
    "finance-approver": ["snapshots.view_snapshot", "snapshots.view_restore"],
    "ops": ["snapshots.view_snapshot", "snapshots.view_restore", "snapshots.take_snapshot"],
}


class Migration(migrations.Migration):
    dependencies = [
        ("snapshots", "0001_initial"),
        ("revassure", "0011_roles_see_rejected_webhooks"),
    ]

    operations = [grants.operation(GRANTS)]
