from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ObservabilityConfig(AppConfig):
    name = "observability"
    verbose_name = "Alerts and metrics"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # why: Django's documented place to register checks and connect signal
        # receivers; signals imports django_q's models, which need the registry.
        from observability import checks, signals  # noqa: F401

        post_migrate.connect(signals.after_migrate, sender=self)
