from django.apps import AppConfig
from django.db.models.signals import post_migrate


class SnapshotsConfig(AppConfig):
    name = "snapshots"
    verbose_name = "Snapshots"

    def ready(self):
        # why: Django's documented place to register system checks and connect
        # signal receivers; the modules import models, which cannot load before
        # the app registry is ready.
        from snapshots import checks, signals  # noqa: F401

        post_migrate.connect(signals.after_migrate, sender=self)
