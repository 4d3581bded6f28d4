from typing import ClassVar

from django.apps import AppConfig

from revassure.roles import APPROVER, OPS, REVIEWER

# What every role may see here.
SEE = ["view_datamigration", "view_providereventdelivery", "view_rejectedwebhook"]


class BackfillConfig(AppConfig):
    name = "backfill"
    verbose_name = "Backfill"
    # What each role may do here (revassure.grants syncs it after migrate): ops
    # run and control data migrations, approvers and ops approve a plan someone
    # else made, everyone sees migrations and deliveries (refused ones too).
    grants: ClassVar[dict[str, list[str]]] = {
        REVIEWER: SEE,
        APPROVER: [*SEE, "approve_plan"],
        OPS: [*SEE, "change_datamigration", "approve_plan"],
    }
    # Every minute (revassure.schedules syncs them after migrate): migrations
    # whose worker was lost (a task killed at its timeout, say blocked on a lock
    # a dead worker's transaction holds, is not redelivered) go to a worker
    # again; webhook deliveries waiting with no drainer are drained.
    schedules: ClassVar[dict[str, tuple[str, int]]] = {
        "sweep-data-migrations": ("backfill.tasks.sweep_migrations", 1),
        "sweep-webhook-deliveries": ("backfill.tasks.sweep_webhooks", 1),
    }
