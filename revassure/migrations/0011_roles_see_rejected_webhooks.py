"""Every role that sees webhook deliveries sees the requests refused for their signature too."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GRANTS = {
    "finance-reviewer": ["backfill.view_rejectedwebhook"],
    "finance-approver": ["backfill.view_rejectedwebhook"],
    "ops": ["backfill.view_rejectedwebhook"],
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
        ("revassure", "0010_roles_for_breaks"),
        ("backfill", "0006_rejected_webhooks_and_correlation_ids"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
