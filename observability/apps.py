from typing import ClassVar

from django.apps import AppConfig
from django.db.models.signals import post_migrate

from revassure.roles import APPROVER, OPS, REVIEWER

# What every role may see here.
SEE = ["view_alert", "view_alertnotification", "view_alertrule"]


class ObservabilityConfig(AppConfig):
    name = "observability"
    verbose_name = "Alerts and metrics"
    default_auto_field = "django.db.models.BigAutoField"
    # What each role may do here (revassure.grants syncs it after migrate): ops
    # acknowledge alerts and change the rules (and see their history).
    grants: ClassVar[dict[str, list[str]]] = {
        REVIEWER: SEE,
        APPROVER: SEE,
        OPS: [*SEE, "acknowledge_alert", "change_alertrule", "view_alertrulechange"],
    }

    def ready(self) -> None:
        # why: Django's documented place to register checks and connect signal
        # receivers; signals imports django_q's models, which need the registry.
        from observability import checks, signals  # noqa: F401

        post_migrate.connect(signals.after_migrate, sender=self)
