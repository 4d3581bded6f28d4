from typing import ClassVar

from django.apps import AppConfig
from django.db.models.signals import post_migrate

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

    def ready(self) -> None:
        # why: Django's documented place to connect signal receivers; the module
        # imports models, which cannot load before the app registry is ready.
        from backfill import signals

        post_migrate.connect(signals.after_migrate, sender=self)
