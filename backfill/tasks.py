"""django-q2 tasks of the backfill app: thin wrappers around the services, which
enqueue them by dotted path (so no service imports this module)."""

import time
from datetime import timedelta

from django.conf import settings

from backfill import drain, file_replay, runs, services, stored_replay, uploads
from backfill.models import DataMigration, MigrationKind, MigrationStatus
from revassure.firestore import get_gateway


def apply_delivery(delivery_id: int) -> str:
    return services.apply_webhook_delivery(delivery_id, gateway=get_gateway()).status


def drain_webhooks(handoff: str = "") -> int:
    """Apply the webhook deliveries waiting, in batches, for at most half the
    worker timeout (then a next task goes on with the lease)."""
    deadline = time.monotonic() + settings.Q_CLUSTER["timeout"] / 2
    return services.drain_webhooks(gateway=get_gateway(), deadline=deadline, handoff=handoff)


def sweep_webhooks() -> int:
    """Every minute: webhook deliveries left waiting get a drain."""
    return drain.sweep()


def run_migration(migration_id: int, handoff: str = "") -> str:
    """Run a data migration for at most half the worker timeout, then hand what
    is left to a next task (with this task's lease, so it takes over at once):
    a migration of any size never meets the timeout that would kill its worker.

    A task that cannot claim the migration (another worker holds it, or ops
    stopped it) does nothing: only the holder of the lease hands it on."""
    migration = DataMigration.objects.get(pk=migration_id)
    lease = runs.claim(migration, handoff=handoff)
    if lease is None:
        return migration.status
    deadline = time.monotonic() + settings.Q_CLUSTER["timeout"] / 2
    if migration.kind == MigrationKind.REPLAY_STORED:
        if not stored_replay.check_bound_plan(migration, lease, gateway=get_gateway()):
            return migration.status  # refused: the world changed since the plan
        migration = stored_replay.run_stored_replay(
            migration, gateway=get_gateway(), deadline=deadline, lease=lease
        )
    else:
        if not file_replay.check_bound_plan(migration, lease, gateway=get_gateway()):
            return migration.status  # refused: the world changed since the plan
        with uploads.stored_lines(migration) as lines:
            migration = file_replay.run_replay(
                migration, lines, gateway=get_gateway(), deadline=deadline, lease=lease
            )
    if migration.status == MigrationStatus.RUNNING and migration.lease == lease:
        runs.enqueue_run(migration_id, lease=lease)
    return migration.status


def sweep_migrations() -> int:
    """Every few minutes: resume migrations whose worker was lost."""
    return runs.resume_abandoned(timedelta(seconds=settings.Q_CLUSTER["retry"]))
