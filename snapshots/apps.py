from typing import ClassVar

from django.apps import AppConfig
from django.db.models.signals import post_migrate

from revassure.roles import APPROVER, OPS, REVIEWER

# What every role may see here.
SEE = ["view_snapshot", "view_restore"]


class SnapshotsConfig(AppConfig):
    name = "snapshots"
    verbose_name = "Snapshots"
    # What each role may do here (revassure.grants syncs it after migrate): ops
    # take snapshots (and verify them again); every role may look at them and
    # at restores.
    grants: ClassVar[dict[str, list[str]]] = {
        REVIEWER: SEE,
        APPROVER: SEE,
        OPS: [*SEE, "take_snapshot"],
    }

    def ready(self) -> None:
        # why: Django's documented place to register system checks and connect
        # signal receivers; the modules import models, which cannot load before
        # the app registry is ready.
        from snapshots import checks, signals  # noqa: F401

        post_migrate.connect(signals.after_migrate, sender=self)
