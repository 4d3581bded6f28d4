"""Signal receivers of the backfill app (connected in BackfillConfig.ready)."""

from typing import Any

from django_q.models import Schedule


def after_migrate(**kwargs: Any) -> None:
    """The sweep that hands migrations whose worker was lost to a worker again:
    every minute (one indexed query), since a task killed at its timeout (say,
    blocked on a lock a dead worker's transaction holds) is not redelivered."""
    Schedule.objects.update_or_create(
        name="sweep-data-migrations",
        defaults={
            "func": "backfill.tasks.sweep_migrations",
            "schedule_type": Schedule.MINUTES,
            "minutes": 1,
            "repeats": -1,
        },
    )
    Schedule.objects.update_or_create(
        name="sweep-webhook-deliveries",
        defaults={
            "func": "backfill.tasks.sweep_webhooks",
            "schedule_type": Schedule.MINUTES,
            "minutes": 1,
            "repeats": -1,
        },
    )
