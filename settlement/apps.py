from typing import ClassVar

from django.apps import AppConfig

from revassure.roles import APPROVER, OPS, REVIEWER
from revassure.sealing import chain as sealing

# What every role may see here.
SEE = ["view_settlementrun", "view_settlementrow", "view_followup"]


class SettlementConfig(AppConfig):
    name = "settlement"
    verbose_name = "Settlement"
    # What each role may do here (revassure.grants syncs it after migrate):
    # reviewers and approvers read and export the reports, approvers mark a row
    # explained, ops import statements (replaying what they found missing
    # through the backfill's own permission).
    grants: ClassVar[dict[str, list[str]]] = {
        REVIEWER: [*SEE, "export_settlementrun"],
        APPROVER: [*SEE, "export_settlementrun", "explain_settlementrow"],
        OPS: [*SEE, "run_settlement"],
    }
    # Every minute (revassure.schedules syncs it after migrate): a run whose
    # worker was lost goes to a worker again (settlement.services.resume_abandoned).
    schedules: ClassVar[dict[str, tuple[str, int]]] = {"sweep-settlement-runs": ("settlement.tasks.sweep", 1)}

    def ready(self) -> None:
        # why: the report kind names the models, which load only once the
        # registry is ready; the kernel's chain (verify_reports) walks what
        # the apps register here.
        from settlement import reports

        sealing.register(reports.KIND)
