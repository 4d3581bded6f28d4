"""Replay of stored deliveries (received, deferred, failed; quarantined too after
a fix), in id order, one transaction per delivery, as a tracked data migration.

A dry run plans the same deliveries by the replay's rules (backfill.planner),
in the same order, and writes nothing to Firestore; a real run bound to its
plan plans them again first and refuses, writing nothing, unless that gives
exactly the approved plan (four eyes: backfill/plan_approval.py).
"""

from __future__ import annotations

import logging
import time

from django.db import transaction

from backfill import file_replay, planner, run_requests, runs, services
from backfill.models import DataMigration, EventStatus, MigrationKind, MigrationSource, ProviderEventDelivery
from revassure.firestore import FirestoreGateway

log = logging.getLogger(__name__)
CHECK_EVERY = 100  # deliveries between two looks at whether ops paused or cancelled


def run_stored_replay(
    migration: DataMigration,
    *,
    gateway: FirestoreGateway,
    deadline: float | None = None,
    lease: str | None = None,
) -> DataMigration:
    """Re-apply the stored deliveries the migration names, in id order, from its checkpoint.

    Stops early, progress saved, when someone pauses or cancels it, or, still
    running, at `deadline` (time.monotonic()) for a next task to go on.
    A dry run plans them instead, to the end. `lease`: the claim its caller
    already holds; without it, the run claims.
    """
    lease = lease or runs.claim(migration)
    if lease is None:
        return migration
    params = migration.parameters
    chosen = run_requests.stored_deliveries(params)
    if migration.dry_run:
        raws = chosen.order_by("pk").values_list("raw", flat=True).iterator()
        numbered = ((n, raw.encode()) for n, raw in enumerate(raws, 1) if n > migration.checkpoint)
        return runs.held(
            migration, lease, lambda: file_replay.plan_numbered(migration, lease, numbered, gateway=gateway)
        )
    items = chosen.filter(pk__gt=migration.checkpoint)
    if "expected" not in params:
        params["expected"] = items.count()
        DataMigration.objects.filter(pk=migration.pk).update(parameters=params)

    def attempt() -> DataMigration | None:
        """The migration where it stopped early, or None: every delivery applied."""
        for handled, delivery_id in enumerate(
            items.order_by("pk").values_list("pk", flat=True).iterator(), 1
        ):
            # The outcome, the counters and the checkpoint commit together: a
            # worker killed at any point leaves nothing counted twice or missed,
            # and the Firestore side is idempotent, so nothing is applied twice.
            with transaction.atomic():
                delivery = ProviderEventDelivery.objects.select_for_update().get(pk=delivery_id)
                if delivery.status == EventStatus.QUARANTINED:
                    services.requeue(delivery)
                status = services.apply_delivery(delivery_id, gateway=gateway).status
                runs.save_progress(migration, lease, {status: 1}, checkpoint=delivery_id)
            if _past(deadline) or (handled % CHECK_EVERY == 0 and not runs.still_mine(migration, lease)):
                migration.refresh_from_db()
                return migration
        return None

    stopped = runs.held(migration, lease, attempt)
    return stopped if stopped is not None else runs.complete(migration, lease, gateway=gateway)


def check_bound_plan(migration: DataMigration, lease: str, *, gateway: FirestoreGateway) -> bool:
    """Before the first delivery of a real run bound to a plan: plan the same
    deliveries again now (file_replay.bound_check). True when it may run."""

    def replan(plan_id: int) -> DataMigration:
        planner.require_approved(plan_id)
        named = {
            key: migration.parameters[key] for key in run_requests.SELECTION if key in migration.parameters
        }
        fresh = DataMigration.objects.create(
            kind=MigrationKind.REPLAY_STORED,
            source=MigrationSource.DATABASE,
            parameters={**named, runs.CHECKS: plan_id},
            dry_run=True,
        )
        fresh = run_stored_replay(fresh, gateway=gateway)
        planner.check_plan(plan_id, fresh)
        return fresh

    return file_replay.bound_check(migration, lease, replan)


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline
