"""Reconciliation's signal receivers; imported by ReconciliationConfig.ready()."""

from typing import Any

from django.dispatch import receiver

from reconciliation import execution
from reconciliation.schedule import sync_daily_schedule
from revassure.flags import ensure_flags
from revassure.freeze import unfrozen


def after_migrate(**kwargs: Any) -> None:
    """Connected to post_migrate for this app: the daily schedule and the flags exist after any migrate."""
    sync_daily_schedule()
    ensure_flags()


@receiver(unfrozen, dispatch_uid="reconciliation-resume-after-unfreeze")
def resume_after_unfreeze(**kwargs: Any) -> None:
    execution.resume_waiting()
