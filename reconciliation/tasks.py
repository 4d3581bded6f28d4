"""django-q2 tasks: thin wrappers that load ids and call the services.

The services enqueue them by dotted path ("reconciliation.tasks.start_run"),
so this module imports the services and never the reverse.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from reconciliation import (
    break_cause_batches,
    execution,
    pending_checks,
    recovery,
    request_states,
    schedule,
    services,
)
from revassure.firestore import get_gateway

log = logging.getLogger(__name__)


def start_run(run_id: int) -> None:
    services.execute_run(run_id, gateway=get_gateway(), inline=False, enqueue_chunk=services.enqueue_chunk)


def check_chunk(chunk_id: int) -> None:
    services.process_chunk(chunk_id, gateway=get_gateway())


def sweep_runs() -> dict:
    """Every minute: runs whose work was lost with a machine go on, the day's
    run starts if its scheduled task was lost, and the causes of breaks whose
    task was lost are computed (recovery.sweep)."""
    return recovery.sweep(gateway=get_gateway())


def fill_break_causes() -> int:
    """The probable causes of the breaks a run opened (reconciliation.breaks)."""
    return break_cause_batches.fill_causes(gateway=get_gateway())


def scheduled_reconcile(intended_date: str | None = None) -> int | None:
    """The daily schedule's entry point: the day's run, once (None when it was
    requested already: by the minute's sweep, its task having been lost, or by
    this task delivered twice). A disabled flag raises, so the refusal shows as
    a failed task in the admin rather than passing unnoticed."""
    run = services.request_daily_run(schedule.day_of(timezone.now(), intended_date))
    return run.pk if run is not None else None


def execute_request(request_id: int) -> str:
    return execution.execute(request_id, gateway=get_gateway()).state


def sweep_requests() -> dict:
    """Every few minutes: expire undecided proposals, and give back the claims of
    workers that died mid-execution (longer ago than any task may run), then
    enqueue what is waiting."""
    expired = request_states.expire_due()
    released = execution.release_abandoned(timedelta(seconds=settings.Q_CLUSTER["retry"]))
    resumed = execution.resume_waiting()
    return {"expired": expired, "released": released, "resumed": resumed}


def check_written_wallets() -> int:
    """The wallets Eventarc events noted, checked once due (reconciliation.watcher)."""
    return len(pending_checks.check_noted(gateway=get_gateway()))


def sweep_written_wallets() -> bool:
    """Every minute: noted wallets whose check was lost with a machine get one."""
    return pending_checks.sweep_noted()
