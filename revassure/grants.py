"""Permissions granted to the role groups by data migrations.

Each such migration names what it grants ({role: ["app_label.codename", ...]})
and hands the mapping to `operation()`. The permissions are created first:
Django makes them only after the whole migrate run, and a grant must find
them in the same run. Only the historical models of `apps` are used, so a
migration behaves the same whatever the models look like later.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations


def _permissions(apps, grants: dict[str, list[str]]):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, names in grants.items():
        group = Group.objects.get(name=role)
        for name in names:
            app_label, codename = name.split(".")
            yield group, Permission.objects.get(content_type__app_label=app_label, codename=codename)


def grant(apps, grants: dict[str, list[str]]) -> None:
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    for group, permission in _permissions(apps, grants):
        group.permissions.add(permission)


def revoke(apps, grants: dict[str, list[str]]) -> None:
    for group, permission in _permissions(apps, grants):
        group.permissions.remove(permission)


def operation(grants: dict[str, list[str]]) -> migrations.RunPython:
    """The migration operation that grants `grants`, and revokes them when unapplied."""
    return migrations.RunPython(
        lambda apps, schema_editor: grant(apps, grants),
        lambda apps, schema_editor: revoke(apps, grants),
    )
