"""Something new waits for a person: the kinds of the "Waiting for me" inbox, and
the announcement an app makes when one of its items starts waiting.

The inbox itself (what waits for whom, the page, the counts, the email) is the
observability app's; the apps name the kind and the object. The announcement
is a row written in the caller's transaction (WaitingAnnouncement, an outbox:
revassure/outbox.py) and its task is enqueued by its dotted path, after
commit: the core never imports an app, a notice that cannot be sent never
fails the action that caused it, and one whose task was lost with a machine is
sent by the minute's sweep.
"""

import logging
from enum import StrEnum

from django.conf import settings
from django_q.tasks import async_task

from revassure import dbclock
from revassure.logs import on_commit
from revassure.models import WaitingAnnouncement

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
    """Tell the people `kind` #object_id now waits for (by email): the
    announcement is stored with the caller's transaction, its task enqueued
    after the commit."""
    announcement = WaitingAnnouncement.objects.create(
        kind=str(kind), object_id=object_id, queued_at=dbclock.now()
    )
    on_commit(lambda: enqueue(announcement.pk, 1))


def enqueue(announcement_id: int, attempt: int) -> None:
    """Hand an announcement's attempt to the notify cluster; a broker that refuses
    is logged (the sweep queues it again), never raised."""
    try:
        # On the notify cluster: a slow mail server never holds a worker that applies money.
        async_task(
            NOTIFY_TASK,
            announcement_id,
            attempt,
            task_name=f"waiting-{announcement_id}-attempt-{attempt}",
            cluster=settings.NOTIFY_CLUSTER_NAME,
        )
    except Exception:  # a broker that refuses must not fail the action that committed
        log.exception("could not enqueue the waiting notice", extra={"announcement_id": announcement_id})
