"""Signal receivers of the backfill app (connected in BackfillConfig.ready)."""

from django_q.models import Schedule


def after_migrate(**kwargs):
    """The sweep that hands migrations whose worker was lost to a worker again."""
    Schedule.objects.update_or_create(
        name="sweep-data-migrations",
        defaults={
            "func": "backfill.tasks.sweep_migrations",
            "schedule_type": Schedule.MINUTES,
            "minutes": 10,
            "repeats": -1,
        },
    )
