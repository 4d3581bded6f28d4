"""Snapshots in Cloud Storage (gs://bucket/prefix), against the Cloud Storage
emulator: taken, verified and restored by the commands as in a directory,
damage named by file and line, an interrupted one completed from the bucket on
another machine, and the admin's snapshots in the shared bucket."""

import gzip
import json

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from google.cloud import storage as cloud_storage

from revassure.firestore import FirestoreRefused
from snapshots import places, services
from snapshots.models import Restore, Snapshot, SnapshotStatus, Verification
from tests.helpers import firestore_client, put_wallets

pytestmark = pytest.mark.django_db

WALLETS = {"u1": (130, [100, 30]), "u2": (5, [2]), "u3": (7, [7]), "u4": (1, [1]), "u5": (0, [])}


@pytest.fixture
def target(settings):
    project = "restore-target-" + settings.GOOGLE_CLOUD_PROJECT.removeprefix("test-")
    settings.RESTORE_ALLOWED_PROJECTS = [project]
    settings.FIRESTORE_PRODUCTION_PROJECT = "revassure-prod"
    return project


def objects(bucket, prefix):
    """{name under the prefix: its generation} of what the bucket holds."""
    blobs = cloud_storage.Client().list_blobs(bucket, prefix=prefix + "/")
    return {blob.name.removeprefix(prefix + "/"): blob.generation for blob in blobs}


def command_json(capsys, *args):
    call_command(*args, "--json")
    return json.loads(capsys.readouterr().out)


def test_a_snapshot_taken_verified_and_restored_in_cloud_storage(gateway, bucket, target, capsys):
    put_wallets(gateway, WALLETS)
    place = f"gs://{bucket}/snapshots/before-cutover"

    taken = command_json(capsys, "snapshot_firestore", place, "--wallets-per-part", "2")
    verified = command_json(capsys, "verify_snapshot", place)
    restored = command_json(capsys, "restore_snapshot", place, "--project", target)

    snapshot = Snapshot.objects.get()
    assert (snapshot.path, snapshot.status, snapshot.verification) == (
        place,
        SnapshotStatus.COMPLETED,
        Verification.INTACT,
    )
    assert (taken["path"], taken["wallets"], taken["entries"]) == (place, 5, 5)
    held = objects(bucket, "snapshots/before-cutover")
    data = sorted(name for name in held if name.endswith(".jsonl.gz"))
    assert data[:3] == ["auditLog.jsonl.gz", "config.jsonl.gz", "dataMigrations.jsonl.gz"]
    assert [name for name in data if name.startswith("wallets-")] == [
        "wallets-000001.jsonl.gz",
        "wallets-000002.jsonl.gz",
        "wallets-000003.jsonl.gz",
    ]
    # Exactly the snapshot: every data file with its index, the manifest, nothing half-written.
    assert set(held) == {*data, *(name.replace(".jsonl.gz", ".lines") for name in data), "manifest.json"}
    assert not places.staging(place).exists()  # this machine's copy is gone
    manifest_blob = cloud_storage.Client().bucket(bucket).blob("snapshots/before-cutover/manifest.json")
    manifest = json.loads(manifest_blob.download_as_bytes())
    assert manifest["wallets"] == 5 and len(manifest["files"]) == len(data)

    assert verified["ok"] is True and verified["errors"] == [] and verified["wallets"] == 5
    assert [v["uid"] for v in verified["violations"]] == ["u2"]  # points 5, ledger 2
    assert restored["written"] == 10 and Restore.objects.get().path == place
    copy = firestore_client(target)
    assert copy.document("wallets/u1").get().to_dict()["points"] == 130
    assert len(list(copy.collection("wallets/u1/ledger").stream())) == 2


def test_damage_to_a_snapshot_in_a_bucket_is_named_by_file_and_line_and_nothing_is_restored(
    gateway, bucket, target, capsys
):
    put_wallets(gateway, WALLETS)
    place = f"gs://{bucket}/snap"
    call_command("snapshot_firestore", place, "--wallets-per-part", "2")
    blob = cloud_storage.Client().bucket(bucket).blob("snap/wallets-000002.jsonl.gz")
    lines = gzip.decompress(blob.download_as_bytes()).split(b"\n")
    assert b'"points":{"int":"7"}' in lines[0]  # u3, the part's first wallet
    lines[0] = lines[0].replace(b'"points":{"int":"7"}', b'"points":{"int":"8"}')
    blob.upload_from_string(gzip.compress(b"\n".join(lines), mtime=0))
    capsys.readouterr()

    with pytest.raises(CommandError) as failed:
        call_command("verify_snapshot", place)
    assert failed.value.returncode == 2
    assert "wallets-000002.jsonl.gz line 1: changed" in capsys.readouterr().err
    with pytest.raises(CommandError, match="refused, nothing written: the snapshot is not intact"):
        call_command("restore_snapshot", place, "--project", target)
    assert not list(firestore_client(target).collection("wallets").stream())

    # The admin's "verify again" on the recorded snapshot reads the bucket too.
    snapshot = services.verify_snapshot(Snapshot.objects.get())
    assert snapshot.verification == Verification.CORRUPT
    assert "wallets-000002.jsonl.gz line 1: changed" in snapshot.verification_errors


def test_an_interrupted_snapshot_in_a_bucket_is_completed_from_it_on_another_machine(
    gateway, bucket, monkeypatch, capsys
):
    put_wallets(gateway, WALLETS)
    place = f"gs://{bucket}/snap"
    stream = gateway.snapshot_wallets

    def interrupted(**kwargs):
        for n, item in enumerate(stream(**kwargs)):
            if n == 3:
                raise FirestoreRefused("the test took Firestore away")
            yield item

    with monkeypatch.context() as patch:
        patch.setattr(gateway, "snapshot_wallets", interrupted)
        with pytest.raises(FirestoreRefused):
            services.take(place, actor=None, gateway=gateway, wallets_per_part=2)
    before = objects(bucket, "snap")
    assert {"wallets-000001.jsonl.gz", "wallets-000001.lines", "progress.jsonl"} <= set(before)
    assert "manifest.json" not in before and Snapshot.objects.get().status == SnapshotStatus.FAILED
    # Another machine: none of this one's staging copy.
    staging = places.staging(place)
    for path in staging.iterdir():
        path.unlink()

    snapshot = services.take(place, actor=None, gateway=gateway, wallets_per_part=2)

    assert (snapshot.status, snapshot.verification, snapshot.wallets) == (
        SnapshotStatus.COMPLETED,
        Verification.INTACT,
        5,
    )
    after = objects(bucket, "snap")
    # The part finished before the interruption was carried on from, not written again.
    assert after["wallets-000001.jsonl.gz"] == before["wallets-000001.jsonl.gz"]
    assert "progress.jsonl" not in after and "manifest.json" in after
    assert command_json(capsys, "verify_snapshot", place)["ok"] is True


def test_a_bucket_place_that_holds_something_else_or_a_finished_snapshot_is_refused(gateway, bucket):
    put_wallets(gateway, {"u1": (1, [1])})
    cloud_storage.Client().bucket(bucket).blob("mine/notes.txt").upload_from_string(b"mine")
    with pytest.raises(CommandError, match="holds files that are not a snapshot's"):
        call_command("snapshot_firestore", f"gs://{bucket}/mine")
    assert set(objects(bucket, "mine")) == {"notes.txt"}

    call_command("snapshot_firestore", f"gs://{bucket}/done")
    with pytest.raises(CommandError, match="already holds snapshot"):
        call_command("snapshot_firestore", f"gs://{bucket}/done")
    Snapshot.objects.all().delete()  # even without its row, the manifest says so
    with pytest.raises(CommandError, match="already holds a finished snapshot"):
        call_command("snapshot_firestore", f"gs://{bucket}/done")
    with pytest.raises(CommandError, match="a prefix of its own"):
        call_command("snapshot_firestore", f"gs://{bucket}")


def test_a_place_cloud_storage_does_not_have_is_said_plainly(storage_emulator, firestore_project, capsys):
    with pytest.raises(CommandError) as failed:
        call_command("verify_snapshot", "gs://no-such-bucket/snap")
    assert "Cloud Storage answered 404" in str(failed.value) and "\n" not in str(failed.value)


def test_the_admins_snapshot_goes_to_the_shared_bucket_and_any_machine_verifies_it(
    client, gateway, ops, bucket, settings, django_capture_on_commit_callbacks, capsys
):
    settings.SNAPSHOT_DIR = f"gs://{bucket}/snapshots"
    put_wallets(gateway, {"u1": (1, [1]), "u2": (3, [1])})
    client.force_login(ops)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("admin:snapshots_start"), {"start": "Take a snapshot"})

    snapshot = Snapshot.objects.get()
    assert snapshot.path.startswith(f"gs://{bucket}/snapshots/{gateway.project}-")
    assert (snapshot.status, snapshot.verification, snapshot.wallets) == (
        SnapshotStatus.COMPLETED,
        Verification.INTACT,
        2,
    )
    assert "manifest.json" in objects(bucket, snapshot.path.removeprefix(f"gs://{bucket}/"))
    page = client.get(reverse("admin:snapshots_snapshot_change", args=[snapshot.pk])).content.decode()
    assert f"verify_snapshot {snapshot.path} --manifest-sha256 {snapshot.manifest_sha256}" in page
    verified = command_json(
        capsys, "verify_snapshot", snapshot.path, "--manifest-sha256", snapshot.manifest_sha256
    )
    assert verified["ok"] is True and [v["uid"] for v in verified["violations"]] == ["u2"]
