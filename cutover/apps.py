from typing import ClassVar

from django.apps import AppConfig

from revassure.roles import APPROVER, OPS, REVIEWER
from revassure.sealing import chain as sealing

# What every role may see here.
SEE = ["view_cutover", "view_cutoverstep"]


class CutoverConfig(AppConfig):
    name = "cutover"
    verbose_name = "Cutover"
    # What each role may do here (revassure.grants syncs it after migrate): ops
    # run the cutover, approvers accept a reconciliation that found violations.
    grants: ClassVar[dict[str, list[str]]] = {
        REVIEWER: SEE,
        APPROVER: [*SEE, "accept_cutover_reconcile"],
        OPS: [*SEE, "run_cutover"],
    }

    def ready(self) -> None:
        # A cutover in progress holds the freeze it relies on (revassure/freeze.py).
        # why: both import models, which are not loaded yet when apps.py is imported
        from cutover.services import freeze_hold
        from revassure import freeze

        freeze.register_hold(freeze_hold)

        # The snapshot and reconcile steps run in the workers from the admin:
        # their ending records the step at once.
        from cutover import background
        from reconciliation.services import run_finished
        from snapshots.services import snapshot_finished

        run_finished.connect(background.settle_current, dispatch_uid="cutover-settle-after-run")
        snapshot_finished.connect(background.settle_current, dispatch_uid="cutover-settle-after-snapshot")

        # why: the report kind names the models, which load only once the
        # registry is ready; the kernel's chain (verify_reports) walks what
        # the apps register here.
        from cutover import record

        sealing.register(record.KIND)
