"""Leases between machines (revassure/leases.py): expiries by the database's clock,
so a machine whose clock is off neither takes a live lease nor waits on a dead
one; and the heartbeat that keeps a live worker's lease from lapsing."""

import time
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from reconciliation.models import ReconciliationRun, RunStatus, RunTrigger
from revassure import dbclock, leases


def held(seconds: float, lister: str = "me") -> ReconciliationRun:
    run = ReconciliationRun.objects.create(
        trigger=RunTrigger.SCHEDULE, status=RunStatus.RUNNING, lister=lister
    )
    ReconciliationRun.objects.filter(pk=run.pk).update(lease_until=dbclock.ahead(seconds))
    return run


@pytest.mark.django_db
def test_a_lease_lapses_by_the_databases_clock_whatever_the_machines_says():
    live, dead = held(60), held(-1)
    free = set(ReconciliationRun.objects.filter(leases.free()).values_list("pk", flat=True))
    assert free == {dead.pk}
    # A machine whose clock runs ten minutes ahead, or behind, sees the same.
    for skew in (timedelta(minutes=10), timedelta(minutes=-10)):
        with time_machine.travel(timezone.now() + skew, tick=True):
            assert set(ReconciliationRun.objects.filter(leases.free()).values_list("pk", flat=True)) == free
    # Compared with its own clock, the one ahead would have taken the live lease.
    with time_machine.travel(timezone.now() + timedelta(minutes=10), tick=True):
        assert ReconciliationRun.objects.filter(pk=live.pk, lease_until__lt=timezone.now()).exists()


@pytest.mark.django_db(transaction=True)
def test_a_heartbeat_keeps_a_live_workers_lease_and_says_when_it_was_taken_over():
    run = held(0.3)
    mine = ReconciliationRun.objects.filter(pk=run.pk, lister="me")

    with leases.Heartbeat(lambda: mine.update(lease_until=dbclock.ahead(0.3)) == 1, 0.3) as beat:
        time.sleep(1.0)  # three times the lease
        assert not ReconciliationRun.objects.filter(leases.free(), pk=run.pk).exists()
        assert not beat.lost
        ReconciliationRun.objects.filter(pk=run.pk).update(lister="another worker")
        time.sleep(0.3)
        assert beat.lost
    assert leases.machine_of("hosta:1234") == "hosta"
