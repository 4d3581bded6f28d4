"""django-q2 tasks of the backfill app: thin wrappers around the services."""

import time

from django_q.tasks import async_task

from backfill import services
from revassure.firestore import get_gateway


def enqueue_apply(delivery_id: int) -> None:
    async_task("backfill.tasks.apply_delivery", delivery_id, task_name=f"provider-event-{delivery_id}")


def apply_delivery(delivery_id: int) -> str:
    return services.apply_delivery(delivery_id, gateway=get_gateway()).status


def enqueue_migration(migration_id: int) -> None:
    async_task("backfill.tasks.run_migration", migration_id, task_name=f"data-migration-{migration_id}")


def run_migration(migration_id: int) -> str:
    """Run a data migration for at most half the worker timeout, then hand what
    is left to a next task: a migration of any size never meets the timeout
    that would kill its worker."""
    from django.conf import settings

    from backfill import replay
    from backfill.models import DataMigration, MigrationStatus

    migration = DataMigration.objects.get(pk=migration_id)
    deadline = time.monotonic() + settings.Q_CLUSTER["timeout"] / 2
    if migration.kind == "replay_stored":
        migration = replay.run_stored_replay(migration, gateway=get_gateway(), deadline=deadline)
    else:
        with open(migration.parameters["path"], encoding="utf-8", errors="replace") as lines:
            migration = replay.run_replay(
                migration,
                lines,
                gateway=get_gateway(),
                allow_negative=settings.BACKFILL_ALLOW_NEGATIVE_BALANCE,
                deadline=deadline,
            )
    if migration.status == MigrationStatus.RUNNING:
        enqueue_migration(migration_id)
    return migration.status


def sweep_migrations() -> int:
    """Every few minutes: resume stored replays whose worker was lost."""
    from datetime import timedelta

    from django.conf import settings

    from backfill import replay

    return replay.resume_abandoned(timedelta(seconds=settings.Q_CLUSTER["retry"]))
