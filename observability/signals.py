"""Signal receivers of the observability app (connected in ObservabilityConfig.ready)."""

from typing import Any

from django_q.models import Schedule

# name: task, every minute
SCHEDULES = {
    # Alert rules are evaluated every minute (besides right after each run,
    # migration and freeze change).
    "evaluate-alerts": "observability.tasks.evaluate_alerts",
    # Notifications whose task or worker was lost are sent (observability/recovery.py).
    "sweep-notifications": "observability.tasks.sweep_notifications",
}


def after_migrate(**kwargs: Any) -> None:
    """Each of SCHEDULES, every minute."""
    for name, func in SCHEDULES.items():
        Schedule.objects.update_or_create(
            name=name,
            defaults={"func": func, "schedule_type": Schedule.MINUTES, "minutes": 1, "repeats": -1},
        )
