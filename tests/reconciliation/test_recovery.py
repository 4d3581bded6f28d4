"""Work a dead machine held or had taken from the broker is handed out again by the
minute's sweep (reconciliation/recovery.py), and counted once: a run's start, its
listing, its chunks, its seal. The dead worker is written as the database would
hold it after a SIGKILL (its claims and leases, nothing after); the sweep and the
tasks it hands out run here, in sync mode, as a worker would run them.
(tests/hosts kills real machines.)"""

import uuid
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import Schedule

from reconciliation import recovery, schedule, services, tasks, wallet_checks
from reconciliation.models import ReadMode, ReconciliationChunk, ReconciliationRun, RunStatus, RunTrigger
from revassure import dbclock, leases
from tests.helpers import put_wallets

# Ten wallets, three of them drifted (w0, w3, w6) and one malformed (w9).
WALLETS = {f"w{n}": (n + (5 if n % 3 == 0 and n < 9 else 0), [n]) for n in range(9)} | {"w9": (9, ["9"])}
DEAD = "deadhost:4242"


@pytest.fixture
def wallets(gateway, settings, monkeypatch):
    settings.RECONCILE_CHUNK_SIZE = 3
    # A broker queue of this test's own (the ORM's, or Redis with REDIS_URL), empty:
    # whether anything waits there is part of what the sweep judges.
    monkeypatch.setattr(Conf, "CLUSTER_NAME", f"recovery-{uuid.uuid4().hex[:8]}")
    put_wallets(gateway, WALLETS)
    return gateway


def findings(run):
    return sorted((v.uid, v.kind, v.delta, v.ledger_sum) for v in run.violations.all())


def inline(gateway):
    return services.run_inline(actor=None, trigger=RunTrigger.COMMAND, gateway=gateway)


def long_ago():
    return timezone.now() - timedelta(hours=1)


def leases_ago(settings, n=2):
    """Longer ago than a lease lasts, not as long as a task may wait in the broker."""
    return timezone.now() - timedelta(seconds=n * settings.RECONCILE_LEASE_SECONDS)


def sweep(gateway, capture):
    with capture(execute=True):
        return recovery.sweep(gateway=gateway)


def started_by_a_dead_worker(gateway, settings, *, chunks: int, counted: int) -> ReconciliationRun:
    """A run whose worker listed `chunks` chunks, counted the first `counted`, and died."""
    run = ReconciliationRun.objects.create(
        trigger=RunTrigger.SCHEDULE,
        status=RunStatus.RUNNING,
        started_at=long_ago(),
        read_mode=ReadMode.LIVE,
        read_mode_reason="read live in this test",
        lister="dead-listers-claim",
        lease_until=long_ago(),
    )
    for seq, cut in enumerate(wallet_checks.wallet_chunks([], gateway, read_time=None), start=1):
        if seq > chunks:
            break
        queued = leases_ago(settings)
        chunk = ReconciliationChunk.objects.create(run=run, seq=seq, wallets=cut, queued_at=queued)
        if seq <= counted:
            services.process_chunk(chunk.pk, gateway=gateway)
    return run


@pytest.mark.django_db
def test_a_listing_whose_worker_died_is_taken_over_from_its_last_chunk(
    wallets, settings, django_capture_on_commit_callbacks
):
    run = started_by_a_dead_worker(wallets, settings, chunks=2, counted=1)

    found = sweep(wallets, django_capture_on_commit_callbacks)

    run.refresh_from_db()
    assert found == {
        "runs_started": 1,
        "chunks_handed_out": 1,
        "runs_sealed": 0,
        "daily_runs_started": 0,
        "causes_handed_out": 0,
    }
    assert run.status == RunStatus.COMPLETED, run.error
    # Every wallet once: the chunk it counted, the one it cut, the two cut after it.
    assert (run.chunks_total, run.chunks_done, run.wallets_checked) == (4, 4, 10)
    assert findings(run) == findings(inline(wallets))
    assert run.checked_by == {leases.machine_of(leases.holder()): 4}


@pytest.mark.django_db
def test_a_start_delivered_again_while_its_lister_lives_changes_nothing(wallets, settings):
    run = started_by_a_dead_worker(wallets, settings, chunks=1, counted=0)
    ReconciliationRun.objects.filter(pk=run.pk).update(lease_until=dbclock.ahead(60))

    services.execute_run(run.pk, gateway=wallets, inline=False, enqueue_chunk=None)

    run.refresh_from_db()
    assert (run.status, run.chunks_total, run.chunks.count()) == (RunStatus.RUNNING, None, 1)
    assert recovery.lost_chunks(broker_empty=True) == [], "a live lister's chunks are its own"


@pytest.mark.django_db
def test_a_chunk_whose_worker_died_is_checked_again_and_counted_once(
    wallets, settings, django_capture_on_commit_callbacks
):
    run = started_by_a_dead_worker(wallets, settings, chunks=4, counted=0)
    ReconciliationRun.objects.filter(pk=run.pk).update(chunks_total=4, lease_until=None)
    first, *others = run.chunks.order_by("seq")
    ReconciliationChunk.objects.filter(pk=first.pk).update(worker=DEAD, lease_until=dbclock.ahead(60))
    for chunk in others:
        services.process_chunk(chunk.pk, gateway=wallets)
    services.process_chunk(first.pk, gateway=wallets)  # delivered again: its worker's lease lives
    assert not ReconciliationChunk.objects.get(pk=first.pk).done
    assert sweep(wallets, django_capture_on_commit_callbacks)["chunks_handed_out"] == 0

    ReconciliationChunk.objects.filter(pk=first.pk).update(lease_until=long_ago())  # its worker is gone
    found = sweep(wallets, django_capture_on_commit_callbacks)

    run.refresh_from_db()
    assert found["chunks_handed_out"] == 1
    assert run.status == RunStatus.COMPLETED
    assert (run.chunks_done, run.wallets_checked) == (4, 10)
    assert findings(run) == findings(inline(wallets))


@pytest.mark.django_db
def test_chunks_taken_from_the_broker_by_a_dead_machine_go_out_again_once_nothing_waits(wallets, settings):
    run = started_by_a_dead_worker(wallets, settings, chunks=4, counted=1)
    ReconciliationRun.objects.filter(pk=run.pk).update(chunks_total=4, lease_until=None)
    lost = sorted(run.chunks.filter(done=False).values_list("pk", flat=True))
    ReconciliationChunk.objects.filter(pk=lost[0]).update(queued_at=timezone.now())

    # Chunks waiting in a busy broker are not lost until they waited longer than a task may.
    assert recovery.lost_chunks(broker_empty=False) == []
    # Nothing waits: those queued more than a lease ago were in a dead machine's hands.
    assert sorted(recovery.lost_chunks(broker_empty=True)) == lost[1:]
    # Handed out just now: not again until another lease has passed.
    assert recovery.lost_chunks(broker_empty=True) == []
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "retry": 0}
    assert sorted(recovery.lost_chunks(broker_empty=False)) == lost


@pytest.mark.django_db
def test_a_run_counted_whole_but_not_sealed_is_sealed_by_the_sweep(
    wallets, settings, django_capture_on_commit_callbacks
):
    # Its last worker counted the last chunk and died before sealing.
    run = started_by_a_dead_worker(wallets, settings, chunks=4, counted=4)
    ReconciliationRun.objects.filter(pk=run.pk).update(chunks_total=4, lease_until=None)

    found = sweep(wallets, django_capture_on_commit_callbacks)

    run.refresh_from_db()
    assert found == {
        "runs_started": 0,
        "chunks_handed_out": 0,
        "runs_sealed": 1,
        "daily_runs_started": 0,
        "causes_handed_out": 0,
    }
    assert run.status == RunStatus.COMPLETED and len(run.checksum) == 64
    assert findings(run) == findings(inline(wallets))


@pytest.mark.django_db
def test_a_pending_run_whose_start_task_was_lost_is_started(wallets, django_capture_on_commit_callbacks):
    run = ReconciliationRun.objects.create(trigger=RunTrigger.SCHEDULE)
    assert sweep(wallets, django_capture_on_commit_callbacks)["runs_started"] == 0  # its task may wait
    ReconciliationRun.objects.filter(pk=run.pk).update(created_at=long_ago())

    assert sweep(wallets, django_capture_on_commit_callbacks)["runs_started"] == 1

    run.refresh_from_db()
    assert (run.status, run.wallets_checked) == (RunStatus.COMPLETED, 10)


@pytest.mark.django_db
def test_a_daily_run_whose_scheduled_task_was_lost_is_started_by_the_sweep_once(
    wallets, settings, django_capture_on_commit_callbacks
):
    settings.RECONCILE_DAILY_AT = "02:00"
    occurrence = schedule.next_occurrence(2, 0, timezone.now())
    daily = schedule.sync_daily_schedule()
    grace = timedelta(seconds=settings.RECONCILE_LEASE_SECONDS)
    with time_machine.travel(occurrence + grace + timedelta(seconds=5)):
        assert sweep(wallets, django_capture_on_commit_callbacks)["daily_runs_started"] == 0, (
            "a schedule that never fired (a new installation) missed nothing"
        )
    # The scheduler fired it (as it leaves the schedule), and the machine that took its task died.
    Schedule.objects.filter(pk=daily.pk).update(
        task="taken-by-a-dead-machine", next_run=occurrence + timedelta(days=1)
    )

    with time_machine.travel(occurrence + grace - timedelta(seconds=5)):
        assert sweep(wallets, django_capture_on_commit_callbacks)["daily_runs_started"] == 0
    with time_machine.travel(occurrence + grace + timedelta(seconds=5)):
        assert sweep(wallets, django_capture_on_commit_callbacks)["daily_runs_started"] == 1
        # The lost task arrives after all (or a second scheduler fired it): still one run that day.
        assert tasks.scheduled_reconcile(intended_date=occurrence.isoformat()) is None
        assert sweep(wallets, django_capture_on_commit_callbacks)["daily_runs_started"] == 0

    run = ReconciliationRun.objects.get()
    assert (run.trigger, run.scheduled_for) == (RunTrigger.SCHEDULE, occurrence.date())
    assert (run.status, run.wallets_checked) == (RunStatus.COMPLETED, 10)
    # The next day's task starts the next day's run.
    with time_machine.travel(occurrence + timedelta(days=1, seconds=1)):
        assert tasks.scheduled_reconcile(intended_date=(occurrence + timedelta(days=1)).isoformat())
