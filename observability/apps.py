from typing import ClassVar

from django.apps import AppConfig

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
    # Every minute (revassure.schedules syncs them after migrate): the alert
    # rules are evaluated (besides right after each run, migration and freeze
    # change), and notifications whose task or worker was lost are sent
    # (observability/recovery.py).
    schedules: ClassVar[dict[str, tuple[str, int]]] = {
        "evaluate-alerts": ("observability.tasks.evaluate_alerts", 1),
        "sweep-notifications": ("observability.tasks.sweep_notifications", 1),
    }

    def ready(self) -> None:
        # why: Django's documented place to register checks.
        from observability import checks  # noqa: F401
