"""Every refusal a person can meet shares one base (revassure.refusals.Refused),
so every page and command handles them one way; a new app's refusal that forgot
it would be a 500 on some page that catches REFUSALS."""

import importlib
import pkgutil

import pytest

from revassure.refusals import Refused

APPS = [
    "revassure",
    "reconciliation",
    "settlement",
    "backfill",
    "snapshots",
    "cutover",
    "observability",
    "wallets",
    "jobs",
]


def project_exceptions() -> dict[str, type]:
    found = {}
    for app in APPS:
        package = importlib.import_module(app)
        for module in pkgutil.walk_packages(package.__path__, f"{app}."):
            if ".migrations" in module.name or module.name.endswith(".tests"):
                continue
            loaded = importlib.import_module(module.name)
            for name, value in vars(loaded).items():
                if (
                    isinstance(value, type)
                    and issubclass(value, Exception)
                    and value.__module__ == module.name
                ):
                    found[f"{module.name}.{name}"] = value
    return found


def test_every_refusal_of_every_app_is_one_kind():
    exceptions = project_exceptions()
    # The gateway's FirestoreRefused is Firestore refusing a call (a failed
    # precondition, a permission): the machinery's error, not a person's refusal.
    refusals = {
        name
        for name, kind in exceptions.items()
        if (name.endswith("Refused") or issubclass(kind, Refused))
        and not name.startswith("revassure.firestore.")
    }
    # The refusals each app raises to people, by name: all of them found, all of them Refused.
    for expected in [
        "reconciliation.request_states.RequestRefused",
        "reconciliation.break_actions.BreakRefused",
        "settlement.actions.ActionRefused",
        "backfill.plan_approval.PlanRefused",
        "cutover.runbook.CutoverRefused",
        "snapshots.restore.RestoreRefused",
        "snapshots.writer.SnapshotRefused",
        "revassure.freeze.Frozen",
        "revassure.flags.FeatureDisabled",
    ]:
        assert expected in refusals
    assert [name for name in sorted(refusals) if not issubclass(exceptions[name], Refused)] == []


@pytest.mark.parametrize("kind", ["revassure.freeze.AlreadyInState", "backfill.plan_approval.PlanRefused"])
def test_refusals_that_were_value_errors_still_are(kind):
    # Callers written before the base (commands catching ValueError) still catch them.
    exceptions = project_exceptions()
    assert issubclass(exceptions[kind], ValueError) and issubclass(exceptions[kind], Refused)


@pytest.mark.django_db
def test_one_permission_check_for_people_and_the_system(ops, reviewer):
    from revassure.refusals import may, require

    assert may(ops, "revassure.manage_freeze") and not may(reviewer, "revassure.manage_freeze")
    with pytest.raises(PermissionError, match="alice may not freeze"):
        require(reviewer, "revassure.manage_freeze", "freeze")
    # No actor: refused, unless the caller says the product itself may (a schedule, a command).
    with pytest.raises(PermissionError, match="None may not freeze"):
        require(None, "revassure.manage_freeze", "freeze")
    require(None, "revassure.manage_freeze", "freeze", system_may=True)
    # A person who left keeps their groups but may do nothing.
    ops.is_active = False
    ops.save()
    assert not may(ops, "revassure.manage_freeze")
