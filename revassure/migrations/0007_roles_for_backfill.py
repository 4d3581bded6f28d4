"""Give the roles what the backfill needs: ops run and control migrations,
finance may look at them and at the provider events."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GRANTS = {
    "ops": [
        "backfill.view_datamigration",
        "backfill.change_datamigration",
        "backfill.view_providereventdelivery",
    ],
    "finance-reviewer": ["backfill.view_datamigration", "backfill.view_providereventdelivery"],
    "finance-approver": ["backfill.view_datamigration", "backfill.view_providereventdelivery"],
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


class Migration(migrations.Migration):
    dependencies = [
        ("revassure", "0006_backfill_jobs"),
        ("backfill", "0002_data_migrations"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
