"""The life of a data migration: requested, claimed by one worker at a time,
paused, resumed, cancelled, finished, mirrored to Firestore.

Every change of status goes through `transition`, a conditional update that
follows MIGRATION_TRANSITIONS, so a late "completed" can never overwrite a
cancel and two workers can never both hold one migration: a claim writes a
fresh lease, and progress is saved only under the lease that was claimed.
Asking for a run (a file replay, a stored replay, a real run bound to its
plan) is backfill/run_requests.py.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.tasks import async_task

from backfill import plan_approval
from backfill.models import (
    OUTCOMES,
    DataMigration,
    MigrationKind,
    MigrationSource,
    MigrationStatus,
    sources_of,
)
from revassure import alerting, dbclock, metrics
from revassure.firestore import FirestoreGateway
from revassure.logs import on_commit
from revassure.refusals import require
from revassure.waiting import WaitingKind, announce

log = logging.getLogger(__name__)

R = TypeVar("R")

FLAG = "backfill_enabled"
PERMISSION = "backfill.change_datamigration"
RUN_TASK = "backfill.tasks.run_migration"
# A dry run made to check a bound run against its plan names that plan here.
CHECKS = "checks"


class LeaseLost(Exception):
    """Another worker took the migration over (or ops stopped it): stop, save nothing."""


def require_permission(actor: User | None) -> None:
    """Every entry point asks here: a person needs the permission; None is the
    system (the job API's authenticated scheduler, a command on the server)."""
    require(actor, PERMISSION, "run data migrations", system_may=True)


def enqueue_run(migration_id: int, *, lease: str = "") -> None:
    """Hand the migration to a worker after the commit (the task by its dotted
    path: services never import their tasks); `lease` lets a worker's
    continuation take over from it without waiting for it to look dead."""
    on_commit(lambda: async_task(RUN_TASK, migration_id, lease, task_name=f"data-migration-{migration_id}"))


def transition(migration_id: int, status: str, *, where: Q | None = None, **fields: Any) -> bool:
    """Move a migration to `status` if the state machine allows it from where it
    is now (and `where` holds, e.g. a lease): True if it moved."""
    rows = DataMigration.objects.filter(pk=migration_id, status__in=sources_of(status))
    if where is not None:
        rows = rows.filter(where)
    return rows.update(status=status, **fields) == 1


def claim(migration: DataMigration, *, handoff: str = "") -> str | None:
    """Take a migration to run: the lease to save progress under, or None.

    A pending migration is free; a running one only when `handoff` is its
    lease (its own worker handing on to a next task) or when its lease has
    lapsed (`lapsed`: that worker is gone). Paused, cancelled and finished migrations are left alone,
    so a late redelivery never restarts what ops stopped.
    """
    lease = uuid.uuid4().hex
    free = Q(status=MigrationStatus.PENDING) | (Q(status=MigrationStatus.RUNNING) & lapsed())
    if handoff:
        free |= Q(status=MigrationStatus.RUNNING, lease=handoff)
    claimed = transition(
        migration.pk,
        MigrationStatus.RUNNING,
        where=free,
        lease=lease,
        heartbeat_at=dbclock.now(),
        # When it first ran, for its rate (shown beside this machine's other times).
        started_at=Coalesce(F("started_at"), Value(timezone.now())),
    )
    migration.refresh_from_db()
    return lease if claimed else None


def lapsed() -> Q:
    """Running migrations whose worker is taken for dead. A stored replay saves
    its heartbeat after every delivery: silent REPLAY_LEASE_SECONDS, it is gone
    (live intake waits on it, see live_stored_replay). Other migrations may go
    longer between heartbeats (a file's plan, a batch): silent longer than a
    task may live (django-q2 kills a task at its timeout). Heartbeats are
    written and judged by the database's clock (revassure.dbclock)."""
    return replay_lapsed() | Q(heartbeat_at__lt=dbclock.ago(settings.Q_CLUSTER["timeout"]))


def replay_lapsed() -> Q:
    # A stored replay's dry run plans in memory, saving no heartbeat until it ends: the general rule.
    return Q(
        kind=MigrationKind.REPLAY_STORED,
        dry_run=False,
        heartbeat_at__lt=dbclock.ago(settings.REPLAY_LEASE_SECONDS),
    )


def live_stored_replay() -> bool:
    """A replay of stored deliveries is at work (running under a live lease) or
    about to be (requested within REPLAY_LEASE_SECONDS): the webhook drain steps
    aside for it. One whose worker died stops counting once its lease lapses."""
    fresh = dbclock.ago(settings.REPLAY_LEASE_SECONDS)
    live = Q(status=MigrationStatus.RUNNING, heartbeat_at__gte=fresh) | Q(
        status=MigrationStatus.PENDING, created_at__gte=fresh
    )
    # A dry run writes nothing: the drain need not wait for it.
    return DataMigration.objects.filter(live, kind=MigrationKind.REPLAY_STORED, dry_run=False).exists()


def _mine(migration: DataMigration, lease: str):
    # Progress already made is saved even when ops paused or cancelled meanwhile
    # (what landed in Firestore must be counted); only a new claim ends a lease.
    return DataMigration.objects.filter(pk=migration.pk, lease=lease)


def save_progress(migration: DataMigration, lease: str, counts: dict[str, int], *, checkpoint: int) -> None:
    """Count handled items and move the checkpoint, under the claimed lease; call
    it inside the transaction that saves those items' outcomes, so LeaseLost
    rolls them back together."""
    handled = sum(counts.values())
    saved = _mine(migration, lease).update(
        heartbeat_at=dbclock.now(),
        total=F("total") + handled,
        processed=F("processed") + handled,
        checkpoint=checkpoint,
        **{name: F(name) + counts.get(name, 0) for name in OUTCOMES},
    )
    if not saved:
        raise LeaseLost(f"migration {migration.pk} is no longer this worker's")
    on_commit(lambda counted=dict(counts): metrics.replay_events(counted))


def move_counts(migration: DataMigration, lease: str, moved: dict[str, int]) -> None:
    """Deferred items that found their outcome later: out of `deferred`, into it."""
    saved = _mine(migration, lease).update(
        deferred=F("deferred") - sum(moved.values()),
        **{name: F(name) + n for name, n in moved.items()},
    )
    if not saved:
        raise LeaseLost(f"migration {migration.pk} is no longer this worker's")
    # Counted again with the outcome they found: the counter of `deferred` says
    # how many waited, not how many wait now.
    on_commit(lambda counted=dict(moved): metrics.replay_events(counted))


def still_mine(migration: DataMigration, lease: str) -> bool:
    """Whether the worker should go on: still running under its lease (not paused,
    cancelled or taken over)."""
    return _mine(migration, lease).filter(status=MigrationStatus.RUNNING).exists()


def complete(
    migration: DataMigration, lease: str, *, gateway: FirestoreGateway, **fields: Any
) -> DataMigration:
    """Completed, if still this worker's: a cancel that came first stays a cancel."""
    transition(
        migration.pk, MigrationStatus.COMPLETED, where=Q(lease=lease), finished_at=timezone.now(), **fields
    )
    migration.refresh_from_db()
    if migration.status == MigrationStatus.COMPLETED:
        if not migration.dry_run:
            publish(migration, gateway)
        elif CHECKS not in migration.parameters and plan_approval.needs_approval(migration):
            announce(WaitingKind.BACKFILL_PLAN, migration.pk)  # a plan for a second person
        log.info("migration finished", extra={"migration_id": migration.pk, **migration.outcomes()})
    alerting.evaluate_soon()
    return migration


def held(migration: DataMigration, lease: str, work: Callable[[], R]) -> R | DataMigration:
    """What `work` returns, done for the migration under `lease`. A lease lost
    meanwhile (another worker took the migration over) ends it quietly: the
    migration as it now is. Any other error fails the migration, and is raised."""
    try:
        return work()
    except LeaseLost:
        log.warning("migration taken over; this worker stops", extra={"migration_id": migration.pk})
        migration.refresh_from_db()
        return migration
    except Exception as exc:
        fail(migration, lease, exc)
        raise


def fail(migration: DataMigration, lease: str, exc: BaseException, *, error: str = "") -> None:
    """Failed, with `error` (or the exception) as the reason shown on the run."""
    transition(
        migration.pk,
        MigrationStatus.FAILED,
        where=Q(lease=lease),
        error=error or f"{type(exc).__name__}: {exc}",
        finished_at=timezone.now(),
    )
    alerting.evaluate_soon()


def set_status(migration_id: int, action: str, *, actor: User) -> DataMigration:
    """Ops pause, resume or cancel a migration; resuming hands it to a worker again."""
    require_permission(actor)
    target = {
        "pause": MigrationStatus.PAUSED,
        "resume": MigrationStatus.PENDING,
        "cancel": MigrationStatus.CANCELLED,
    }[action]
    now = timezone.now()
    with transaction.atomic():
        current = DataMigration.objects.select_for_update().filter(pk=migration_id).first()
        # Running time is what rate and time left are measured over: a pause
        # (or a failure, until resumed) is counted apart.
        fields: dict = {}
        if action == "pause":
            fields = {"paused_at": now}
        elif action == "resume" and current is not None:
            stopped = current.paused_at or current.finished_at
            if stopped is not None:
                fields = {
                    "paused_seconds": current.paused_seconds + (now - stopped).total_seconds(),
                    "paused_at": None,
                    "finished_at": None,
                }
        if not transition(migration_id, target, **fields):
            raise ValueError(f"migration {migration_id} cannot {action} now")
        if action == "resume":
            enqueue_run(migration_id)
    return DataMigration.objects.get(pk=migration_id)


def resume_abandoned(older_than: timedelta) -> int:
    """Hand running migrations whose worker went silent to a worker again (a
    broker like Redis does not redeliver the task of a killed worker, the ORM's
    only after Q_RETRY): stored replays as soon as their lease lapses, and
    uploads. A pending one whose task may have been lost with a machine before
    any worker took it is queued again: once the broker holds nothing and it
    was requested more than REPLAY_LEASE_SECONDS ago, or whatever waits, once
    requested longer ago than `older_than` (a second task finds it claimed). A
    command's run is left to whoever ran it: its file may be on another machine."""
    workers_run = Q(source__in=[MigrationSource.DATABASE, MigrationSource.UPLOAD])
    silent = replay_lapsed() | Q(heartbeat_at__lt=dbclock.ago(older_than))
    silent &= Q(status=MigrationStatus.RUNNING)
    waited = Q(created_at__lt=dbclock.ago(older_than))
    if get_broker().queue_size() == 0:
        waited |= Q(created_at__lt=dbclock.ago(settings.REPLAY_LEASE_SECONDS))
    lost = Q(status=MigrationStatus.PENDING) & waited
    abandoned = list(DataMigration.objects.filter(workers_run, silent | lost).values_list("pk", flat=True))
    for migration_id in abandoned:
        enqueue_run(migration_id)
    return len(abandoned)


def publish(migration: DataMigration, gateway: FirestoreGateway) -> None:
    """Mirror a finished migration to Firestore `dataMigrations/{id}`. A failure
    is logged, not raised: the migration is complete in the database, which is
    what the admin shows."""
    try:
        gateway.put_migration(str(migration.pk), mirror(migration))
    except Exception as exc:
        log.error("data migration mirror failed", extra={"migration_id": migration.pk, "error": repr(exc)})


def mirror(migration: DataMigration) -> dict:
    return {
        "kind": migration.kind,
        "source": migration.source,
        "status": migration.status,
        "dryRun": migration.dry_run,
        "parameters": migration.parameters,
        "total": migration.total,
        **migration.outcomes(),
        "checkpoint": migration.checkpoint,
        "startedAt": migration.started_at,
        "finishedAt": migration.finished_at,
    }
