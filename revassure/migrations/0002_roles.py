"""Create the role groups with their permissions."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

# Frozen here: later changes to the roles come in migrations of their own.
ROLE_PERMISSIONS = {
    "finance-reviewer": [
        "reconciliation.view_reconciliationrun",
        "reconciliation.view_violation",
        "reconciliation.export_reconciliationrun",
    ],
    "finance-approver": [
        "reconciliation.view_reconciliationrun",
        "reconciliation.view_violation",
        "reconciliation.export_reconciliationrun",
    ],
    "ops": [
        "reconciliation.view_reconciliationrun",
        "reconciliation.view_violation",
        "reconciliation.run_reconciliation",
        "revassure.view_featureflag",
        "revassure.change_featureflag",
        "revassure.view_featureflagchange",
    ],
}


def forwards(apps, schema_editor):
    # Permissions are normally created after all migrations; make sure ours exist now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, names in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        for name in names:
            app_label, codename = name.split(".")
            group.permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )


def backwards(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=list(ROLE_PERMISSIONS)).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("revassure", "0001_initial"),
        ("reconciliation", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
