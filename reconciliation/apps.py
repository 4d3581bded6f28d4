from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ReconciliationConfig(AppConfig):
    name = "reconciliation"
    verbose_name = "Reconciliation"

    def ready(self):
        post_migrate.connect(_after_migrate, sender=self)


def _after_migrate(**kwargs):
    from reconciliation.schedule import sync_daily_schedule
    from revassure.flags import ensure_flags

    sync_daily_schedule()
    ensure_flags()
