"""Give the roles what breaks need: reviewers work on them (assign, take,
acknowledge, note, propose heals), approvers accept differences, ops look."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

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
        ("revassure", "0009_append_only_freeze_and_flag_history"),
        ("reconciliation", "0006_breaks"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
