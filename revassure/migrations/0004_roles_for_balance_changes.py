"""Give the roles what heals, manual adjustments and the freeze need."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GRANTS = {
    "finance-reviewer": [
        "reconciliation.propose_balancerequest",
        "reconciliation.view_balancerequest",
        "reconciliation.view_requestevent",
        "revassure.view_freezeevent",
    ],
    "finance-approver": [
        "reconciliation.approve_balancerequest",
        "reconciliation.view_balancerequest",
        "reconciliation.view_requestevent",
        "revassure.view_freezeevent",
    ],
    "ops": [
        "reconciliation.view_balancerequest",
        "reconciliation.view_requestevent",
        "revassure.manage_freeze",
        "revassure.view_freezeevent",
    ],
}


def forwards(apps, schema_editor):
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, names in GRANTS.items():
        group = Group.objects.get(name=role)
        for name in names:
            app_label, codename = name.split(".")
            group.permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )


def backwards(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, names in GRANTS.items():
        for name in names:
            app_label, codename = name.split(".")
            Group.objects.get(name=role).permissions.remove(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )


class Migration(migrations.Migration):
    dependencies = [
        ("revassure", "0003_freezeevent"),
        ("reconciliation", "0003_balance_requests"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
