"""What each role may do is declared by each app and synced after every migrate
(revassure/grants.py): the groups hold exactly that, whatever was done by hand."""

import pytest
from django.apps import apps
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.db.migrations.loader import MigrationLoader

from revassure import grants
from revassure.roles import APPROVER, OPS, REVIEWER, ROLES


def held(role: str) -> set[str]:
    return {
        f"{p.content_type.app_label}.{p.codename}" for p in Group.objects.get(name=role).permissions.all()
    }


@pytest.mark.django_db
def test_each_role_holds_exactly_what_the_apps_declare():
    declared = grants.declared()
    assert set(declared) == set(ROLES)
    for role in ROLES:
        assert held(role) == declared[role]
    # What the product promises each role, read as a person would: reviewers
    # propose and work breaks, approvers approve and accept, ops run things.
    assert {"reconciliation.propose_balancerequest", "reconciliation.work_break"} <= held(REVIEWER)
    assert "reconciliation.approve_balancerequest" not in held(REVIEWER)
    assert {"reconciliation.approve_balancerequest", "backfill.approve_plan"} <= held(APPROVER)
    assert {"revassure.manage_freeze", "cutover.run_cutover", "snapshots.take_snapshot"} <= held(OPS)
    assert "reconciliation.approve_balancerequest" not in held(OPS)


@pytest.mark.django_db
def test_migrate_puts_the_roles_back_as_declared():
    ops = Group.objects.get(name=OPS)
    ops.permissions.remove(Permission.objects.get(codename="manage_freeze"))
    ops.permissions.add(Permission.objects.get(codename="approve_balancerequest"))  # by hand, undeclared
    Group.objects.get(name=REVIEWER).delete()

    call_command("migrate", verbosity=0)  # nothing to apply: the sync still runs

    assert held(OPS) == grants.declared()[OPS]
    assert "revassure.manage_freeze" in held(OPS)
    assert "reconciliation.approve_balancerequest" not in held(OPS)
    assert held(REVIEWER) == grants.declared()[REVIEWER]


@pytest.mark.django_db
def test_sync_says_what_it_changed_and_nothing_when_in_step():
    assert grants.sync() == {}
    Group.objects.get(name=APPROVER).permissions.add(Permission.objects.get(codename="run_cutover"))
    assert grants.sync() == {APPROVER: {"added": [], "removed": ["cutover.run_cutover"]}}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("declaration", "refusal"),
    [
        ({"auditors": ["view_snapshot"]}, "snapshots grants to 'auditors'"),
        ({OPS: ["fly_snapshot"]}, "snapshots grants ops 'fly_snapshot'"),
    ],
)
def test_a_declaration_that_names_no_role_or_no_permission_is_refused(monkeypatch, declaration, refusal):
    monkeypatch.setattr(apps.get_app_config("snapshots"), "grants", declaration)
    with pytest.raises(ValueError, match=refusal):
        grants.sync()


def test_no_migration_of_the_core_grants_for_an_app_any_more():
    # The core's migrations that still depend on an app's are the job model's
    # history (it lived in the core before it moved to the jobs app).
    loader = MigrationLoader(None, ignore_no_migrations=True)
    outside = {
        (name, dependency)
        for (app, name), migration in loader.disk_migrations.items()
        if app == "revassure"
        for dependency in migration.dependencies
        if dependency[0] not in {"revassure", "auth", "contenttypes", "__setting__"}
    }
    assert {name for name, _ in outside} == {"0005_jobs", "0006_backfill_jobs"}
