from typing import ClassVar

from django.apps import AppConfig

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
    # Every minute (revassure.schedules syncs it after migrate): a snapshot whose
    # worker was lost goes to a worker again (snapshots.services.resume_abandoned).
    schedules: ClassVar[dict[str, tuple[str, int]]] = {"sweep-snapshots": ("snapshots.tasks.sweep", 1)}

    def ready(self) -> None:
        # why: Django's documented place to register system checks; the module
        # imports models, which cannot load before the app registry is ready.
        from snapshots import checks  # noqa: F401
