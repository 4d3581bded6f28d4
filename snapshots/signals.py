"""Signal receivers of the snapshots app (connected in SnapshotsConfig.ready)."""

from typing import Any

from django_q.models import Schedule


def after_migrate(**kwargs: Any) -> None:
    """The sweep that hands a snapshot whose worker was lost to a worker again,
    every minute (snapshots.services.resume_abandoned)."""
    Schedule.objects.update_or_create(
        name="sweep-snapshots",
        defaults={
            "func": "snapshots.tasks.sweep",
            "schedule_type": Schedule.MINUTES,
            "minutes": 1,
            "repeats": -1,
        },
    )
