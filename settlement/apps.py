from typing import ClassVar

from django.apps import AppConfig
from django.db.models.signals import post_migrate

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

    def ready(self) -> None:
        # why: the report kind names the models, which load only once the
        # registry is ready; the kernel's chain (verify_reports) walks what
        # the apps register here; signal receivers are connected here, as Django documents.
        from settlement import reports, signals

        sealing.register(reports.KIND)
        post_migrate.connect(signals.after_migrate, sender=self)
