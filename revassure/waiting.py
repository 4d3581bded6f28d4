"""Something new waits for a person: the kinds of the "Waiting for me" inbox, and
the announcement an app makes when one of its items starts waiting.

The inbox itself (what waits for whom, the page, the counts, the email) is the
observability app's; the apps name the kind and the object, and the task is
enqueued by its dotted path, after commit: the core never imports an app, and a
notice that cannot be sent never fails the action that caused it.
"""

import logging
from enum import StrEnum

from django.conf import settings
from django_q.tasks import async_task

from revassure.logs import on_commit

log = logging.getLogger(__name__)

NOTIFY_TASK = "observability.tasks.notify_waiting"


class WaitingKind(StrEnum):
    BALANCE_REQUEST = "balance_request"
    CUTOVER_ACCEPTANCE = "cutover_acceptance"
    SETTLEMENT_ROWS = "settlement_rows"
    BREAK = "break"
    ALERT = "alert"
    BACKFILL_PLAN = "backfill_plan"


def announce(kind: WaitingKind, object_id: int) -> None:
    """After commit, tell the people `kind` #object_id now waits for (by email)."""

    def enqueue() -> None:
        try:
            # On the notify cluster: a slow mail server never holds a worker that applies money.
            async_task(
                NOTIFY_TASK,
                str(kind),
                object_id,
                task_name=f"waiting-{kind}-{object_id}",
                cluster=settings.NOTIFY_CLUSTER_NAME,
            )
        except Exception:  # a broker that refuses must not fail the action that committed
            log.exception("could not enqueue the waiting notice", extra={"kind": str(kind), "id": object_id})

    on_commit(enqueue)
