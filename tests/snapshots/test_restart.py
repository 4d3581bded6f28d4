"""An interrupted snapshot is completed by taking it again into the same directory."""

import json

import pytest
from django.core.management import CommandError, call_command

from devtools.emulator import free_port
from revassure.firestore import FirestoreRefused
from snapshots import services
from snapshots.models import Snapshot, SnapshotStatus, Verification
from tests.helpers import put_wallets

pytestmark = pytest.mark.django_db


def wallets(count):
    return {f"w{n:02d}": (n, [n]) for n in range(count)}


def interrupt_after(gateway, monkeypatch, wallets_read):
    """Firestore goes away after `wallets_read` wallets (for good: no retry helps)."""
    stream = gateway.snapshot_wallets

    def interrupted(**kwargs):
        for n, item in enumerate(stream(**kwargs)):
            if n == wallets_read:
                raise FirestoreRefused("the test took Firestore away")
            yield item

    monkeypatch.setattr(gateway, "snapshot_wallets", interrupted)


def test_an_interrupted_snapshot_is_completed_by_running_the_command_again(
    gateway, tmp_path, monkeypatch, capsys
):
    put_wallets(gateway, wallets(7))
    out = tmp_path / "snap"
    with monkeypatch.context() as patch:
        interrupt_after(gateway, patch, 5)
        with pytest.raises(FirestoreRefused):
            services.take(out, actor=None, gateway=gateway, wallets_per_part=2)
    kept = {
        name: (out / name).stat().st_ino for name in ("wallets-000001.jsonl.gz", "wallets-000002.jsonl.gz")
    }
    assert Snapshot.objects.get().status == SnapshotStatus.FAILED
    assert not (out / "manifest.json").exists()
    # As a killed process would leave it: the third part half-written, and a
    # fourth that made it to its final name before its record was written.
    first = (out / "wallets-000001.jsonl.gz").read_bytes()
    (out / "wallets-000003.jsonl.gz.partial").write_bytes(first[: len(first) // 2])
    (out / "wallets-000004.jsonl.gz").write_bytes(first[:10])

    call_command("snapshot_firestore", str(out), "--wallets-per-part", "2", "--json")
    printed = json.loads(capsys.readouterr().out)

    snapshot = Snapshot.objects.get()
    assert (snapshot.status, snapshot.verification) == (SnapshotStatus.COMPLETED, Verification.INTACT)
    assert (printed["wallets"], printed["entries"], printed["points_total"]) == (7, 7, sum(range(7)))
    manifest = json.loads((out / "manifest.json").read_text())
    assert [f["name"] for f in manifest["files"] if f["holds"] == "wallets"] == [
        f"wallets-00000{n}.jsonl.gz" for n in range(1, 5)
    ]
    assert [f["wallets"] for f in manifest["files"][:4]] == [2, 2, 2, 1]
    # The parts finished before the interruption were kept, not written again.
    assert {name: (out / name).stat().st_ino for name in kept} == kept
    assert not list(out.glob("*.partial")) and not (out / "progress.jsonl").exists()
    assert services.verify(out).ok


@pytest.mark.parametrize("wallets_read", [1, 4, 6, 8])
def test_the_same_snapshot_taken_whole_or_in_two_goes_holds_the_same_lines(
    gateway, tmp_path, monkeypatch, wallets_read
):
    put_wallets(gateway, wallets(9))
    whole = services.take(tmp_path / "whole", actor=None, gateway=gateway, wallets_per_part=4)
    with monkeypatch.context() as patch:
        interrupt_after(gateway, patch, wallets_read)
        with pytest.raises(FirestoreRefused):
            services.take(tmp_path / "twice", actor=None, gateway=gateway, wallets_per_part=4)
    twice = services.take(tmp_path / "twice", actor=None, gateway=gateway, wallets_per_part=4)

    def files(snapshot):
        return [(f["name"], f["sha256"], f["lines"]) for f in snapshot.manifest["files"]]

    assert files(twice) == files(whole)


def test_a_finished_snapshot_is_never_written_over(gateway, tmp_path):
    put_wallets(gateway, wallets(1))
    services.take(tmp_path / "snap", actor=None, gateway=gateway)
    with pytest.raises(Exception, match="already holds snapshot"):
        services.take(tmp_path / "snap", actor=None, gateway=gateway)


def test_a_directory_with_other_files_is_refused(gateway, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(Exception, match="holds files that are not a snapshot's"):
        services.take(tmp_path, actor=None, gateway=gateway)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_firestore_out_of_reach_ends_the_command_with_one_line_and_a_failed_row(
    firestore_project, settings, monkeypatch, tmp_path, capsys
):
    """Issue 27 item 11: a RetryError (Firestore unreachable) was a raw traceback."""
    closed = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", closed)
    settings.FIRESTORE_EMULATOR_HOST = closed
    settings.FIRESTORE_RETRY_DEADLINE, settings.FIRESTORE_CALL_TIMEOUT = 0.5, 0.25

    with pytest.raises(CommandError) as stopped:
        call_command("snapshot_firestore", str(tmp_path / "snap"))

    message = str(stopped.value)
    assert stopped.value.returncode == 1
    assert "\n" not in message and "Traceback" not in capsys.readouterr().err
    assert message.startswith("the snapshot stopped, Firestore: Timeout of 0.5s exceeded")
    assert message.endswith("; run the command again to carry on")
    snapshot = Snapshot.objects.get()
    assert snapshot.status == SnapshotStatus.FAILED
    assert snapshot.error.startswith("Firestore: Timeout of 0.5s exceeded")
