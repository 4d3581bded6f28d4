from django.apps import AppConfig


class SnapshotsConfig(AppConfig):
    name = "snapshots"
    verbose_name = "Snapshots"

    def ready(self):
        # why: Django's documented place to register system checks.
        from snapshots import checks  # noqa: F401
