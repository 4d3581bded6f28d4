"""Runs whose work was lost with a machine go on: the minute's sweep.

django-q2's Redis broker has no receipts: a task a machine took from the queue
(one its workers run, or the few its cluster fetched ahead) is gone if the
machine dies, and never handed out again. The work itself is in the database,
under leases (revassure/leases.py), so the sweep finds what a dead machine
held and hands it to a worker again:

- a pending run older than a lease (its start task lost): started again;
- a run still listing whose lister's lease lapsed: its listing is taken over
  from the last chunk cut (services.execute_run);
- a chunk whose worker's lease lapsed: handed to a worker again;
- a chunk never taken, once nothing waits in the broker and it was queued
  more than a lease ago (it was in a dead machine's hands), or whatever waits,
  once queued longer than a task may wait (Q_RETRY): handed again;
- a run whose every chunk is counted but which is not sealed (its last worker
  died in between): sealed;
- the day's scheduled run, not requested a grace after its time (the
  schedule's task was lost: a lease when nothing waits in the broker, Q_RETRY
  otherwise): requested, once (the day is claimed: reconciliation/schedule.py);
- open breaks whose probable cause was never computed, created more than a
  lease ago when nothing waits in the broker (Q_RETRY otherwise), and held by
  no worker (the task after their run was lost): the causes task.

Handing a piece of work out twice is harmless: a start finds the run taken, a
chunk finds its live lease or its `done` flag and does nothing, a late daily
task finds its day taken, a causes task computes only the breaks nobody holds.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.tasks import async_task

from reconciliation import break_cause_batches, breaks, schedule, services
from reconciliation.models import ReconciliationChunk, ReconciliationRun, RunStatus
from revassure import dbclock, flags, leases
from revassure.firestore import FirestoreGateway

log = logging.getLogger(__name__)


def sweep(*, gateway: FirestoreGateway) -> dict[str, int]:
    """Hand lost work to the workers again; what was found, by kind."""
    lease = settings.RECONCILE_LEASE_SECONDS
    starts = list(
        ReconciliationRun.objects.filter(
            Q(status=RunStatus.PENDING, created_at__lt=dbclock.ago(lease))
            | (Q(status=RunStatus.RUNNING, chunks_total__isnull=True) & leases.free())
        ).values_list("pk", flat=True)
    )
    for run_id in starts:
        services.enqueue_start(run_id)
    broker_empty = get_broker().queue_size() == 0
    chunks = lost_chunks(broker_empty=broker_empty)
    for chunk_id in chunks:
        services.enqueue_chunk(chunk_id)
    finished = list(
        ReconciliationRun.objects.filter(
            status=RunStatus.RUNNING, chunks_total__isnull=False, chunks_done__gte=F("chunks_total")
        ).values_list("pk", flat=True)
    )
    for run_id in finished:
        services.seal_if_complete(run_id, gateway)
    waited = lease if broker_empty else settings.Q_CLUSTER["retry"]
    day = schedule.missed_day(timezone.now(), waited)
    daily = day is not None and flags.is_enabled(services.FLAG) and bool(services.request_daily_run(day))
    causes = break_cause_batches.blank().filter(created_at__lt=dbclock.ago(waited)).count()
    if causes:
        async_task(breaks.CAUSES_TASK, task_name="break-causes-lost")
    found = {
        "runs_started": len(starts),
        "chunks_handed_out": len(chunks),
        "runs_sealed": len(finished),
        "daily_runs_started": int(daily),
        "causes_handed_out": causes,
    }
    if any(found.values()):
        log.warning("reconciliation work lost with a worker handed out again", extra=found)
    return found


def lost_chunks(*, broker_empty: bool) -> list[int]:
    """The chunks of running runs a dead worker held or had taken from the broker,
    marked queued again now (the caller hands each to a worker)."""
    lease = settings.RECONCILE_LEASE_SECONDS
    # While a live lister cuts chunks (an inline run: checks them too), its chunks are its own.
    listed = Q(run__lease_until__isnull=True) | Q(run__lease_until__lt=dbclock.now())
    waited = Q(queued_at__lt=dbclock.ago(settings.Q_CLUSTER["retry"]))
    if broker_empty:
        waited |= Q(queued_at__isnull=True) | Q(queued_at__lt=dbclock.ago(lease))
    lost = ReconciliationChunk.objects.filter(run__status=RunStatus.RUNNING, done=False).filter(
        leases.lapsed() | (Q(lease_until__isnull=True) & listed & waited)
    )
    chunk_ids = list(lost.values_list("pk", flat=True))
    # Given back: the next worker takes it at once; if its task is lost too, the
    # chunk is unclaimed and queued from now, for a later sweep.
    ReconciliationChunk.objects.filter(pk__in=chunk_ids).update(lease_until=None, queued_at=dbclock.now())
    return chunk_ids
