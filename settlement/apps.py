from django.apps import AppConfig
from django.db.models.signals import post_migrate

from revassure.sealing import chain as sealing


class SettlementConfig(AppConfig):
    name = "settlement"
    verbose_name = "Settlement"

    def ready(self):
        # why: the report kind names the models, which load only once the
        # registry is ready; the kernel's chain (verify_reports) walks what
        # the apps register here; signal receivers are connected here, as Django documents.
        from settlement import reports, signals

        sealing.register(reports.KIND)
        post_migrate.connect(signals.after_migrate, sender=self)
