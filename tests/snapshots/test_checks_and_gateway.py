"""The settings checks, the managed export's local refusal, and the snapshot
gateway calls' deadlines (they follow FIRESTORE_RETRY_DEADLINE like every other)."""

import time

import pytest
from django.core.management import call_command
from google.api_core import exceptions as gexc

from devtools.emulator import free_port
from revassure.firestore import FirestoreError, FirestoreGateway
from revassure.firestore.managed_export import ManagedExportUnavailable
from revassure.firestore.snapshots import Snapshots
from snapshots import services
from snapshots.checks import restore_targets
from snapshots.models import Snapshot
from tests.helpers import put_wallets

# CI's PostgreSQL pass skips it, having run it in the defaults pass: touches Firestore only, never a database.
pytestmark = pytest.mark.same_on_every_database

DEADLINE = 0.5
BOUND = 3 * DEADLINE + 2.0


def test_a_restore_list_naming_production_fails_the_start_up_checks(settings):
    settings.FIRESTORE_PRODUCTION_PROJECT = "revassure-prod"
    settings.RESTORE_ALLOWED_PROJECTS = ["revassure-test", "revassure-prod"]
    assert [problem.id for problem in restore_targets(None)] == ["revassure.E050"]
    assert "RESTORE_ALLOWED_PROJECTS lists revassure-prod" in restore_targets(None)[0].msg


def test_a_restore_list_without_a_production_project_warns_outside_the_emulator(settings):
    settings.FIRESTORE_EMULATOR_HOST = ""
    settings.FIRESTORE_PRODUCTION_PROJECT = ""
    settings.RESTORE_ALLOWED_PROJECTS = ["revassure-test"]
    assert [problem.id for problem in restore_targets(None)] == ["revassure.W050"]


def test_a_bucket_must_be_a_gs_uri(settings):
    settings.SNAPSHOT_BUCKET = "my-bucket"
    assert [problem.id for problem in restore_targets(None)] == ["revassure.E051"]


@pytest.mark.parametrize("place", ["gs://ops-bucket", "gs://ops-bucket/"])
def test_snapshots_in_a_bucket_need_a_prefix_of_their_own(settings, place):
    settings.SNAPSHOT_DIR = place
    assert [problem.id for problem in restore_targets(None)] == ["revassure.E052"]
    settings.SNAPSHOT_DIR = place.rstrip("/") + "/snapshots"
    assert restore_targets(None) == []


@pytest.mark.django_db
def test_locally_a_managed_export_is_refused_clearly_and_the_json_lines_snapshot_taken(
    gateway, settings, tmp_path, capsys
):
    settings.SNAPSHOT_BUCKET = "gs://revassure-snapshots"
    put_wallets(gateway, {"u1": (1, [1])})

    with pytest.raises(ManagedExportUnavailable, match="managed export needs Google Cloud"):
        gateway.start_managed_export(settings.SNAPSHOT_BUCKET)
    call_command("snapshot_firestore", str(tmp_path / "snap"), "--json")

    captured = capsys.readouterr()
    assert "Managed export: Not taken: managed export needs Google Cloud" in captured.err
    assert "the JSON Lines snapshot is the only one taken here" in captured.err
    snapshot = Snapshot.objects.get()
    assert snapshot.managed_export_operation == ""
    assert snapshot.managed_export_state.startswith("Not taken: managed export needs Google Cloud")
    assert services.verify(tmp_path / "snap").ok


OPERATIONS = {
    "snapshot_wallets": lambda g: list(g.snapshot_wallets()),
    "snapshot_collection": lambda g: list(g.snapshot_collection("config")),
    "snapshot_read_time": lambda g: g.snapshot_read_time(),
    "count_wallets": lambda g: g.count_wallets(),
    "holds_documents": lambda g: g.holds_documents(),
    "write_documents": lambda g: g.write_documents([{"path": "config/x", "fields": {"n": {"int": "1"}}}]),
    "delete_documents": lambda g: g.delete_documents(["config/x"]),
}


@pytest.mark.parametrize("operation", OPERATIONS)
def test_each_snapshot_call_gives_up_within_the_deadline_when_firestore_refuses_connections(
    operation, firestore_project, monkeypatch
):
    with monkeypatch.context() as patch:
        patch.setenv("FIRESTORE_EMULATOR_HOST", f"127.0.0.1:{free_port()}")
        gateway = FirestoreGateway(firestore_project, retry_deadline=DEADLINE, call_timeout=0.25)
        gateway.connect()  # binds every client to the closed port now
    started = time.monotonic()
    with pytest.raises(FirestoreError):
        OPERATIONS[operation](gateway)
    assert time.monotonic() - started < BOUND


def test_a_wallet_stream_broken_mid_way_picks_up_where_it_stopped(gateway, monkeypatch):
    """The emulator ignores cursors: the stream is read again and what was read is skipped."""
    put_wallets(gateway, {f"w{n}": (n, [n]) for n in range(6)})
    calls = []
    documents_after = Snapshots._documents_after

    def breaking(snapshots, parent, collection_id, read_time, position):
        calls.append(position.count)
        for n, document in enumerate(documents_after(snapshots, parent, collection_id, read_time, position)):
            if len(calls) == 1 and n == 3:
                raise gexc.ServiceUnavailable("stream broken by the test")
            yield document

    monkeypatch.setattr(Snapshots, "_documents_after", breaking)
    uids = [wallet["path"] for wallet, _ in gateway.snapshot_wallets()]

    assert uids == [f"wallets/w{n}" for n in range(6)]
    assert calls[:2] == [0, 3]
