from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ReconciliationConfig(AppConfig):
    name = "reconciliation"
    verbose_name = "Reconciliation"

    def ready(self):
        from revassure.freeze import unfrozen

        post_migrate.connect(_after_migrate, sender=self)
        unfrozen.connect(_resume_after_unfreeze, dispatch_uid="reconciliation-resume-after-unfreeze")


def _after_migrate(**kwargs):
    from reconciliation.schedule import sync_daily_schedule, sync_sweep_schedule
    from revassure.flags import ensure_flags

    sync_daily_schedule()
    sync_sweep_schedule()
    ensure_flags()


def _resume_after_unfreeze(**kwargs):
    from reconciliation.changes import resume_waiting

    resume_waiting()
