from django.apps import AppConfig
from django.db.models.signals import post_migrate

from revassure.sealing import chain as sealing


class ReconciliationConfig(AppConfig):
    name = "reconciliation"
    verbose_name = "Reconciliation"

    def ready(self):
        # why: Django's documented place to register system checks and signal
        # receivers; both modules import models, which cannot load before the
        # app registry is ready.
        from reconciliation import checks, signals  # noqa: F401

        post_migrate.connect(signals.after_migrate, sender=self)

        # why: the Breaks admin builds on reconciliation.admin (its CSV export),
        # so it registers from here rather than being imported by it (a cycle);
        # the report kind names the models, which load only once the registry
        # is ready, and the kernel's chain (verify_reports) walks what the apps
        # register here.
        from reconciliation import admin_breaks, rederive, reports  # noqa: F401

        sealing.register(reports.KIND)
        sealing.register_rederive(reports.KIND.name, rederive.rederive)
