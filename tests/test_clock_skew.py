"""Leases hold across machines whose clocks differ by seconds.

A lease is taken, renewed and judged by the database's clock
(revassure.dbclock), never by a machine's own. Here one process plays each
machine in turn: time_machine moves this process's clock (timezone.now(),
time.time()) SKEW seconds ahead or behind, while the database (SQLite's clock,
which time_machine does not touch; the server's, on PostgreSQL) keeps the true
time. For each lease a product keeps (the webhook drainer's, a data
migration's, a balance request's claim), whatever the holder's and the
judge's clocks: a live lease is not taken from its holder, and a dead one is
free once its term has passed, not SKEW seconds later.

With each machine's clock, a judge SKEW ahead took a live lease (the lease,
LEASE seconds, is shorter than the skew), and a lease written by a machine
SKEW ahead stayed taken SKEW seconds after its holder died.
"""

import time
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from backfill import drain, run_requests, runs
from backfill.models import DataMigration, MigrationStatus
from devtools.emulator import free_port
from reconciliation import changes, execution
from tests.firestore_proxy import gateway_at
from tests.helpers import firestore_client, put_wallets

pytestmark = pytest.mark.django_db

LEASE = 1  # seconds: the term of each lease here
SKEW = 20  # seconds between two machines' clocks: far more than a lease's term
# (holder's clock, judge's clock), each relative to the database's.
MACHINES = [(0, SKEW), (-SKEW, 0), (SKEW, 0), (0, -SKEW), (SKEW, -SKEW), (-SKEW, SKEW)]
IDS = [f"holder{h:+d}s-judge{j:+d}s" for h, j in MACHINES]


def on_machine(shift: int):
    """This process, as a machine whose clock is `shift` seconds off the true time."""
    return time_machine.travel(timezone.now() + timedelta(seconds=shift), tick=True)


def outlive_the_lease():
    time.sleep(LEASE + 0.3)  # real time: the database's clock moves on


@pytest.fixture(autouse=True)
def short_leases(settings):
    settings.WEBHOOK_DRAIN_LEASE_SECONDS = LEASE
    settings.REPLAY_LEASE_SECONDS = LEASE


@pytest.mark.parametrize("holder, judge", MACHINES, ids=IDS)
def test_the_webhook_drainers_lease(holder, judge):
    with on_machine(holder):
        held = drain.claim()
    assert held is not None
    with on_machine(judge):
        assert drain.claim() is None, "a live lease was taken from its holder"
        assert not drain.WebhookDrain.objects.filter(drain.lease_free()).exists()
    with on_machine(holder):
        assert drain.renew(held), "the holder lost its live lease"

    outlive_the_lease()  # the holder died after renewing
    with on_machine(judge):
        taken = drain.claim()
    assert taken is not None and taken != held, "a dead lease stayed taken"
    with on_machine(holder):
        assert not drain.renew(held)  # the dead holder, back, finds it gone


@pytest.mark.parametrize("holder, judge", MACHINES, ids=IDS)
def test_a_data_migrations_lease(holder, judge, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks():
        migration = run_requests.request_stored_replay()
    with on_machine(holder):
        held = runs.claim(migration)
        runs.save_progress(migration, held, {"applied": 1}, checkpoint=1)  # its heartbeat
    assert held is not None
    with on_machine(judge), django_capture_on_commit_callbacks() as queued:
        assert runs.live_stored_replay(), "the webhook drain would not step aside for a live replay"
        assert runs.resume_abandoned(timedelta(hours=1)) == 0
        assert runs.claim(DataMigration.objects.get(pk=migration.pk)) is None, "a live lease was taken"
    assert queued == []
    assert runs.still_mine(migration, held)

    outlive_the_lease()  # its worker died
    with on_machine(judge), django_capture_on_commit_callbacks() as queued:
        assert not runs.live_stored_replay()
        assert runs.resume_abandoned(timedelta(hours=1)) == 1, "a dead lease was not handed on"
        taken = runs.claim(DataMigration.objects.get(pk=migration.pk))
    assert len(queued) == 1 and taken is not None and taken != held
    with pytest.raises(runs.LeaseLost), on_machine(holder):
        runs.save_progress(migration, held, {"applied": 1}, checkpoint=2)
    migration.refresh_from_db()
    assert (migration.status, migration.lease, migration.applied) == (MigrationStatus.RUNNING, taken, 1)


@pytest.mark.parametrize("holder, judge", MACHINES, ids=IDS)
def test_a_balance_requests_claim(
    holder, judge, gateway, reviewer, approver, monkeypatch, django_capture_on_commit_callbacks
):
    put_wallets(gateway, {"a": (50, [50])})
    request = changes.propose_adjustment(
        actor=reviewer, uid="a", amount=5, reason_code="goodwill", reason="x", gateway=gateway
    )
    with django_capture_on_commit_callbacks():
        changes.approve(request.pk, actor=approver, gateway=gateway)
    # The holder's worker claims it, then cannot reach Firestore: it leaves the
    # claim for the sweeper, as a worker that died mid-way does.
    unreachable = gateway_at(
        f"127.0.0.1:{free_port()}", gateway.project, monkeypatch, retry_deadline=0.3, call_timeout=0.2
    )
    with on_machine(holder), pytest.raises(Exception):  # noqa: B017 - whatever the client raises
        execution.execute(request.pk, gateway=unreachable)
    request.refresh_from_db()
    assert request.state == "approved" and request.claimed_at is not None

    with on_machine(judge):
        assert execution.release_abandoned(timedelta(seconds=LEASE)) == 0, "a live claim was released"
    outlive_the_lease()
    with on_machine(judge):
        assert execution.release_abandoned(timedelta(seconds=LEASE)) == 1, "a dead claim stayed taken"
    execution.execute(request.pk, gateway=gateway)
    request.refresh_from_db()
    assert request.state == "applied"
    assert firestore_client(gateway.project).document("wallets/a").get().to_dict()["points"] == 55
