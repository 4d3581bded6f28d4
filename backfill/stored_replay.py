"""Replay of stored deliveries (received, deferred, failed; quarantined too after
a fix), in id order, one transaction per delivery, as a tracked data migration."""

from __future__ import annotations

import logging
import time

from django.db import transaction

from backfill import runs, services
from backfill.models import DataMigration, EventStatus, ProviderEventDelivery
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
    `lease`: the claim its caller already holds; without it, the run claims.
    """
    lease = lease or runs.claim(migration)
    if lease is None:
        return migration
    params = migration.parameters
    items = ProviderEventDelivery.objects.filter(status__in=params["statuses"], pk__gt=migration.checkpoint)
    if params.get("since"):
        items = items.filter(received_at__gte=params["since"])
    if params.get("until"):
        items = items.filter(received_at__lt=params["until"])
    if "expected" not in params:
        params["expected"] = items.count()
        DataMigration.objects.filter(pk=migration.pk).update(parameters=params)
    try:
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
    except runs.LeaseLost:
        log.warning("migration taken over; this worker stops", extra={"migration_id": migration.pk})
        migration.refresh_from_db()
        return migration
    except Exception as exc:
        runs.fail(migration, lease, exc)
        raise
    return runs.complete(migration, lease, gateway=gateway)


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline
