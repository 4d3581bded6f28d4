"""Give the roles what the cutover needs: ops run it, finance approvers accept a
reconciliation that found violations, and all three roles see it."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GRANTS = {
    "finance-reviewer": ["cutover.view_cutover", "cutover.view_cutoverstep"],
    "finance-approver": [
        "cutover.view_cutover",
        "cutover.view_cutoverstep",
        "cutover.accept_cutover_reconcile",
    ],
    "ops": ["cutover.view_cutover", "cutover.view_cutoverstep", "cutover.run_cutover"],
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
        ("cutover", "0001_initial"),
        ("revassure", "0011_roles_see_rejected_webhooks"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
