"""restore_snapshot refuses, writing nothing, anywhere but an allowed non-production
project, a damaged snapshot, and a target already holding data (unless --replace)."""

import gzip
import json

import pytest
from django.core.management import CommandError, call_command

from revassure.firestore import get_gateway
from snapshots import services
from snapshots.models import Restore
from snapshots.restore import documents
from tests.helpers import firestore_client, put_wallets

pytestmark = pytest.mark.django_db


@pytest.fixture
def snap(gateway, tmp_path):
    put_wallets(gateway, {"u1": (10, [10]), "u2": (5, [2, 3])})
    gateway.put_config("adjustments", {"frozen": True})
    services.take(tmp_path / "snap", actor=None, gateway=gateway)
    return tmp_path / "snap"


@pytest.fixture
def target(firestore_project, settings):
    project = "target-" + firestore_project.removeprefix("test-")
    settings.RESTORE_ALLOWED_PROJECTS = [project]
    settings.FIRESTORE_PRODUCTION_PROJECT = "revassure-prod"
    return project


def refused(snap, project, *extra) -> str:
    with pytest.raises(CommandError) as failed:
        call_command("restore_snapshot", str(snap), "--project", project, *extra)
    assert str(failed.value).startswith("refused, nothing written: ")
    return str(failed.value)


def test_it_refuses_the_production_project_even_when_listed(snap, settings):
    settings.FIRESTORE_PRODUCTION_PROJECT = "prod-" + snap.parent.name[-8:]
    settings.RESTORE_ALLOWED_PROJECTS = [settings.FIRESTORE_PRODUCTION_PROJECT]

    message = refused(snap, settings.FIRESTORE_PRODUCTION_PROJECT)

    assert "is the production project (FIRESTORE_PRODUCTION_PROJECT)" in message
    assert not get_gateway(settings.FIRESTORE_PRODUCTION_PROJECT).holds_documents()
    assert Restore.objects.get().refused


def test_it_refuses_a_project_not_allowed(snap, target):
    other = target + "-x"
    message = refused(snap, other)

    assert f"{other} is not in RESTORE_ALLOWED_PROJECTS (allowed: {target})" in message
    assert not get_gateway(other).holds_documents()


def test_it_refuses_a_damaged_snapshot(snap, target):
    with gzip.open(snap / "wallets-000001.jsonl.gz") as file:
        lines = file.read().split(b"\n")[:-1]
    with gzip.open(snap / "wallets-000001.jsonl.gz", "wb") as file:
        file.write(b"".join(line + b"\n" for line in lines[1:]))

    message = refused(snap, target)

    assert "the snapshot is not intact: wallets-000001.jsonl.gz line 1: missing" in message
    assert not get_gateway(target).holds_documents()


def test_it_refuses_an_unfinished_snapshot(snap, target):
    (snap / "manifest.json").unlink()
    assert "manifest.json: absent" in refused(snap, target)
    assert not get_gateway(target).holds_documents()


def test_it_refuses_a_target_holding_documents_unless_replace(snap, target, capsys):
    stranger = get_gateway(target)
    stranger.write_wallets([("intruder", 1, {"e": {"amount": 1}})])

    assert "already holds documents; restore with --replace" in refused(snap, target)
    assert firestore_client(stranger.project).document("wallets/intruder").get().exists

    call_command("restore_snapshot", str(snap), "--project", target, "--replace", "--json")
    result = json.loads(capsys.readouterr().out)

    assert (result["deleted"], result["written"]) == (2, 6)
    assert not firestore_client(stranger.project).document("wallets/intruder").get().exists
    assert (
        firestore_client(stranger.project).document("wallets/u2/ledger/e001").get().to_dict()["amount"] == 3
    )
    assert services.verify(snap).ok  # reading a snapshot changes nothing in it


def test_a_restore_into_an_allowed_project_is_recorded(snap, target, ops):
    record = services.restore(snap, project=target, actor=ops)
    assert (record.refused, record.written, record.started_by, record.error) == (False, 6, ops, "")


def test_people_without_the_permission_cannot_restore(snap, target, reviewer):
    with pytest.raises(PermissionError):
        services.restore(snap, project=target, actor=reviewer)
    assert not get_gateway(target).holds_documents()


def test_it_refuses_a_manifest_whose_files_are_in_another_snapshot(snap, target):
    """Issue 27 item 10: a manifest naming ../snap/... must not load another directory's documents."""
    elsewhere = snap.parent / "elsewhere"
    elsewhere.mkdir()
    manifest = json.loads((snap / "manifest.json").read_text())
    for entry in manifest["files"]:
        entry["name"] = f"../snap/{entry['name']}"
    (elsewhere / "manifest.json").write_text(json.dumps(manifest))

    message = refused(elsewhere, target, "--replace")

    assert "is not a plain file name inside the snapshot" in message
    assert not get_gateway(target).holds_documents()
    assert Restore.objects.get().refused


def test_replace_removes_entries_under_a_wallet_that_no_longer_exists(snap, target, capsys):
    """Issue 27 item 12: a wallet document deleted in the target with its ledger left
    behind (plus an extra entry) kept that entry through restore --replace."""
    stranger = get_gateway(target)
    call_command("restore_snapshot", str(snap), "--project", target, "--json")
    capsys.readouterr()
    firestore_client(stranger.project).document("wallets/u2").delete()
    firestore_client(stranger.project).document("wallets/u2/ledger/extra").set(
        {"amount": 999, "type": "purchase"}
    )
    firestore_client(stranger.project).document("wallets/gone/ledger/e1").set(
        {"amount": 5, "type": "purchase"}
    )
    firestore_client(stranger.project).document("reconciliationReports/9/violations/u2").set({"uid": "u2"})

    call_command("restore_snapshot", str(snap), "--project", target, "--replace", "--json")

    assert json.loads(capsys.readouterr().out)["written"] == 6
    in_snapshot = sorted(document["path"] for document in restore_documents(snap))
    assert sorted(stranger.snapshot_paths()) == in_snapshot
    ledger = firestore_client(stranger.project).collection("wallets/u2/ledger").stream()
    assert sorted((entry.id, entry.to_dict()["amount"]) for entry in ledger) == [("e000", 2), ("e001", 3)]
    assert not list(firestore_client(stranger.project).collection("wallets/gone/ledger").stream())


def restore_documents(snap):
    return documents(snap, services.verify(snap).files)
