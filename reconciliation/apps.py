from typing import ClassVar

from django.apps import AppConfig
from django.db.models.signals import post_migrate

from revassure.roles import APPROVER, OPS, REVIEWER
from revassure.sealing import chain as sealing

# What every role may see here.
SEE = ["view_reconciliationrun", "view_violation", "view_break", "view_balancerequest", "view_requestevent"]


class ReconciliationConfig(AppConfig):
    name = "reconciliation"
    verbose_name = "Reconciliation"
    # What each role may do here (revassure.grants syncs it after migrate):
    # reviewers work on breaks and propose changes, approvers decide on them and
    # accept differences, ops run reconciliations; all of them look.
    grants: ClassVar[dict[str, list[str]]] = {
        REVIEWER: [
            *SEE,
            "export_reconciliationrun",
            "export_break",
            "propose_balancerequest",
            "work_break",
        ],
        APPROVER: [
            *SEE,
            "export_reconciliationrun",
            "export_break",
            "approve_balancerequest",
            "accept_break",
        ],
        OPS: [*SEE, "run_reconciliation"],
    }
    # Every few minutes (revassure.schedules syncs them after migrate; the daily
    # run's own schedule is reconciliation/schedule.py's): undecided proposals
    # expire and dead executions' claims are released; runs whose work was lost
    # with a machine go on (reconciliation/recovery.py); wallets Eventarc events
    # noted whose check was lost are checked (pending_checks.sweep_noted).
    schedules: ClassVar[dict[str, tuple[str, int]]] = {
        "sweep-balance-requests": ("reconciliation.tasks.sweep_requests", 10),
        "sweep-reconciliation-runs": ("reconciliation.tasks.sweep_runs", 1),
        "sweep-written-wallets": ("reconciliation.tasks.sweep_written_wallets", 1),
    }

    def ready(self) -> None:
        # why: Django's documented place to register system checks and signal
        # receivers; both modules import models, which cannot load before the
        # app registry is ready.
        from reconciliation import checks, signals  # noqa: F401

        post_migrate.connect(signals.after_migrate, sender=self)

        # why: the breaks' and violations' admins register from here, beside
        # reconciliation.admin (which Django's autodiscovery imports);
        # the report kind names the models, which load only once the registry
        # is ready, and the kernel's chain (verify_reports) walks what the apps
        # register here.
        from reconciliation import admin_breaks, admin_violations, rederive, reports  # noqa: F401

        sealing.register(reports.KIND)
        sealing.register_rederive(reports.KIND.name, rederive.rederive)
