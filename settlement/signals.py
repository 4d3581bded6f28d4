"""Signal receivers of the settlement app (connected in SettlementConfig.ready)."""

from typing import Any

from django_q.models import Schedule


def after_migrate(**kwargs: Any) -> None:
    """The sweep that hands a settlement run whose worker was lost to a worker
    again, every minute (settlement.services.resume_abandoned)."""
    Schedule.objects.update_or_create(
        name="sweep-settlement-runs",
        defaults={
            "func": "settlement.tasks.sweep",
            "schedule_type": Schedule.MINUTES,
            "minutes": 1,
            "repeats": -1,
        },
    )
