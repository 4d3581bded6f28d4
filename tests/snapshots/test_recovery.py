"""A snapshot whose worker died (SIGKILL: its row still running under its lease,
its files on that machine's disk) is handed to another worker by the minute's
sweep once the lease lapses, and completed there; a live worker's snapshot is
left alone, and a second delivery of its task does nothing. (tests/hosts kills
real machines.)"""

from datetime import timedelta

import pytest
from django.utils import timezone

from revassure import dbclock, leases
from snapshots import services, tasks
from snapshots.models import Snapshot, SnapshotStatus, Verification
from tests.helpers import put_wallets

pytestmark = pytest.mark.django_db
DEAD = "deadhost:4242"


@pytest.fixture
def requested(gateway, ops, settings, tmp_path):
    """A snapshot ops asked for, taken by a worker of another machine that died mid-way."""
    settings.SNAPSHOT_DIR = tmp_path / "snapshots"
    put_wallets(gateway, {"u1": (1, [1]), "u2": (5, [2, 2])})
    snapshot = services.request_snapshot(actor=ops)  # its task ran on the dead machine
    Snapshot.objects.filter(pk=snapshot.pk).update(
        status=SnapshotStatus.RUNNING, worker=DEAD, lease_until=dbclock.ahead(60), wallets_done=1
    )
    return snapshot


def test_a_snapshot_whose_worker_died_is_completed_by_another(gateway, requested):
    assert services.resume_abandoned() == 0  # its worker's lease lives
    assert Snapshot.objects.get(pk=requested.pk).status == SnapshotStatus.RUNNING

    Snapshot.objects.filter(pk=requested.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert services.resume_abandoned() == 1  # the take task runs here (sync mode)

    snapshot = Snapshot.objects.get(pk=requested.pk)
    assert (snapshot.status, snapshot.verification, snapshot.wallets) == (
        SnapshotStatus.COMPLETED,
        Verification.INTACT,
        2,
    )
    assert snapshot.worker == leases.holder() and snapshot.lease_until is None
    assert snapshot.violations_count == 1  # u2: 5 points, a ledger of 4


def test_a_second_delivery_of_a_taken_snapshot_does_nothing(gateway, requested):
    assert tasks.take(requested.pk) == SnapshotStatus.RUNNING

    snapshot = Snapshot.objects.get(pk=requested.pk)
    assert (snapshot.status, snapshot.worker, snapshot.error) == (SnapshotStatus.RUNNING, DEAD, "")


def test_a_worker_whose_snapshot_was_taken_over_stops_without_touching_it(gateway, requested, monkeypatch):
    # This worker took it, was slow past its lease, and another worker took it over.
    Snapshot.objects.filter(pk=requested.pk).update(status=SnapshotStatus.PENDING, worker="")
    real_take = services.writer.take

    def taken_over_after_the_first_file(directory, **kwargs):
        progress = kwargs["on_progress"]

        def then_taken_over(done):
            Snapshot.objects.filter(pk=requested.pk).update(worker=DEAD, lease_until=dbclock.ahead(60))
            progress(done)

        return real_take(directory, **{**kwargs, "on_progress": then_taken_over})

    monkeypatch.setattr(services.writer, "take", taken_over_after_the_first_file)
    snapshot = services.run(requested.pk, gateway=gateway, wallets_per_part=1)

    assert (snapshot.status, snapshot.worker, snapshot.error) == (SnapshotStatus.RUNNING, DEAD, "")
