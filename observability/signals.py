"""Signal receivers of the observability app (connected in ObservabilityConfig.ready)."""

from django_q.models import Schedule


def after_migrate(**kwargs):
    """Alert rules are evaluated every minute (besides right after each run,
    migration and freeze change)."""
    Schedule.objects.update_or_create(
        name="evaluate-alerts",
        defaults={
            "func": "observability.tasks.evaluate_alerts",
            "schedule_type": Schedule.MINUTES,
            "minutes": 1,
            "repeats": -1,
        },
    )
