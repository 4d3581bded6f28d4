"""What each role may do: declared by each app, synced after every migrate.

Each app's AppConfig names the permissions of its own models each role holds
(`grants = {role: [codename, ...]}`, revassure.roles names the roles). After
every `migrate` (and every flush of a test database, which Django follows with
the same signal), `sync` makes each role group hold exactly what the apps
declare: a missing group is created, a missing permission added, and a
permission no app declares for the role any more removed. A change to a role is
a change to its app's declaration, reviewed with the code that needs it, and no
migration of the core depends on an app's migrations to grant its permissions.

Roles are the product's: a permission given to a role group by hand in the
admin is taken away at the next migrate (and the sync says so). A person's own
permissions (`user_permissions`) are never touched.
"""

from __future__ import annotations

import logging
from typing import Any

from django.apps import AppConfig, apps
from django.contrib.auth.management import create_permissions
from django.contrib.auth.models import Group, Permission
from django.db import DEFAULT_DB_ALIAS, transaction

from revassure.roles import ROLES

log = logging.getLogger(__name__)


def declared() -> dict[str, set[str]]:
    """Every role's permissions ("app_label.codename"), as the apps declare them."""
    grants: dict[str, set[str]] = {role: set() for role in ROLES}
    for config in apps.get_app_configs():
        for role, codenames in getattr(config, "grants", {}).items():
            if role not in grants:
                raise ValueError(
                    f"{config.label} grants to {role!r}, which is not a role ({', '.join(ROLES)})"
                )
            grants[role] |= {f"{config.label}.{codename}" for codename in codenames}
    return grants


def sync(*, using: str = DEFAULT_DB_ALIAS) -> dict[str, dict[str, list[str]]]:
    """Make each role group hold exactly its declared permissions; what changed,
    per role ({"added": [...], "removed": [...]}, only roles that changed)."""
    grants = declared()
    granting = {name.split(".")[0] for names in grants.values() for name in names}
    for label in granting:
        # Django creates permissions after the whole migrate run, app by app;
        # a grant must find those of every app now.
        create_permissions(apps.get_app_config(label), verbosity=0, using=using)
    changes: dict[str, dict[str, list[str]]] = {}
    with transaction.atomic(using=using):
        for role, names in grants.items():
            wanted = set()
            for name in sorted(names):
                app_label, codename = name.split(".")
                try:
                    wanted.add(
                        Permission.objects.using(using).get(
                            content_type__app_label=app_label, codename=codename
                        )
                    )
                except Permission.DoesNotExist:
                    raise ValueError(
                        f"{app_label} grants {role} {codename!r}, which no model of it defines"
                    ) from None
            group, _ = Group.objects.using(using).get_or_create(name=role)
            held = set(group.permissions.all())
            if held == wanted:
                continue
            group.permissions.set(wanted)
            changes[role] = {
                "added": sorted(f"{p.content_type.app_label}.{p.codename}" for p in wanted - held),
                "removed": sorted(f"{p.content_type.app_label}.{p.codename}" for p in held - wanted),
            }
    for role, change in changes.items():
        if change["removed"]:
            log.warning("role %s: permissions no app grants removed: %s", role, ", ".join(change["removed"]))
    return changes


def after_migrate(sender: AppConfig, using: str = DEFAULT_DB_ALIAS, **kwargs: Any) -> None:
    """post_migrate is sent once per app with models, in INSTALLED_APPS order:
    the roles are synced once, after the last (when every app's tables exist)."""
    with_models = [config for config in apps.get_app_configs() if config.models_module is not None]
    if with_models and sender is with_models[-1]:
        sync(using=using)
