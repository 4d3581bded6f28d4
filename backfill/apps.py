from django.apps import AppConfig
from django.db.models.signals import post_migrate


class BackfillConfig(AppConfig):
    name = "backfill"
    verbose_name = "Backfill"

    def ready(self):
        post_migrate.connect(_after_migrate, sender=self)


def _after_migrate(**kwargs):
    from django_q.models import Schedule

    Schedule.objects.update_or_create(
        name="sweep-data-migrations",
        defaults={
            "func": "backfill.tasks.sweep_migrations",
            "schedule_type": Schedule.MINUTES,
            "minutes": 10,
            "repeats": -1,
        },
    )
