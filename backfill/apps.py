from django.apps import AppConfig
from django.db.models.signals import post_migrate


class BackfillConfig(AppConfig):
    name = "backfill"
    verbose_name = "Backfill"

    def ready(self):
        # why: Django's documented place to connect signal receivers; the module
        # imports models, which cannot load before the app registry is ready.
        from backfill import signals

        post_migrate.connect(signals.after_migrate, sender=self)
