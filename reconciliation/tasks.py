"""django-q2 tasks: thin wrappers that load ids and call the services.

The services enqueue them by dotted path ("reconciliation.tasks.start_run"),
so this module imports the services and never the reverse.
"""

import logging
from datetime import timedelta

from django.conf import settings

from reconciliation import break_causes, changes, execution, recovery, services, watcher
from reconciliation.models import RunTrigger
from revassure.firestore import get_gateway

log = logging.getLogger(__name__)


def start_run(run_id: int) -> None:
    services.execute_run(run_id, gateway=get_gateway(), inline=False, enqueue_chunk=services.enqueue_chunk)


def check_chunk(chunk_id: int) -> None:
    services.process_chunk(chunk_id, gateway=get_gateway())


def sweep_runs() -> dict:
    """Every minute: runs whose work was lost with a machine go on (recovery.sweep)."""
    return recovery.sweep(gateway=get_gateway())


def fill_break_causes() -> int:
    """The probable causes of the breaks a run opened (reconciliation.breaks)."""
    return break_causes.fill_causes(gateway=get_gateway())


def scheduled_reconcile() -> int:
    """The daily schedule's entry point. A disabled flag raises, so the refusal
    shows as a failed task in the admin rather than passing unnoticed."""
    run = services.request_run(actor=None, trigger=RunTrigger.SCHEDULE)
    return run.pk


def execute_request(request_id: int) -> str:
    return execution.execute(request_id, gateway=get_gateway()).state


def sweep_requests() -> dict:
    """Every few minutes: expire undecided proposals, and give back the claims of
    workers that died mid-execution (longer ago than any task may run), then
    enqueue what is waiting."""
    expired = changes.expire_due()
    released = execution.release_abandoned(timedelta(seconds=settings.Q_CLUSTER["retry"]))
    resumed = execution.resume_waiting()
    return {"expired": expired, "released": released, "resumed": resumed}


def check_written_wallets() -> int:
    """The wallets Eventarc events noted, checked once due (reconciliation.watcher)."""
    return len(watcher.check_noted(gateway=get_gateway()))


def sweep_written_wallets() -> bool:
    """Every minute: noted wallets whose check was lost with a machine get one."""
    return watcher.sweep_noted()
