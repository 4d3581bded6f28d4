"""The Eventarc way in (POST /api/events/firestore): wallets noted as written wait in the database
(PendingCheck) for a worker's check, the watcher's check (watcher.check_written), taken under a lease;
the minute's sweep queues a check for what a lost task or a dead worker left."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_q.tasks import async_task

from reconciliation import watcher
from reconciliation.models import PendingCheck
from revassure import dbclock, leases
from revassure.firestore import FirestoreGateway, Write
from revassure.logs import on_commit

CHECK_TASK = "reconciliation.tasks.check_written_wallets"


def note_written(writes: list[Write]) -> list[str]:
    """Note wallets written (from Eventarc events) for their check: a row per
    wallet, due a debounce after its first write; a worker task checks what is
    due. The same event delivered again, or events out of order, fold into the
    row (the earliest write kept), or are checked again: the check reads the
    wallet as it is now. A write to a wallet whose check is under way makes the
    row due again after that check (which may have read the wallet before it).
    Returns the wallets noted."""
    if not writes:
        return []
    due = timezone.now() + timedelta(seconds=settings.WATCHER_DEBOUNCE_SECONDS)
    with transaction.atomic():
        for write in writes:
            row, created = PendingCheck.objects.select_for_update().get_or_create(
                uid=write.uid, defaults={"first_write": write.write_time, "due_at": due}
            )
            if created:
                continue
            if row.claim:
                PendingCheck.objects.filter(pk=row.pk).update(
                    claim="", lease_until=None, due_at=due, first_write=write.write_time
                )
            elif write.write_time < row.first_write:
                PendingCheck.objects.filter(pk=row.pk).update(first_write=write.write_time)
        on_commit(lambda: async_task(CHECK_TASK, task_name="check-written-wallets"))
    return sorted({write.uid for write in writes})


def check_noted(*, gateway: FirestoreGateway) -> list[dict[str, Any]]:
    """Check the noted wallets once they are due (waiting up to a debounce for
    them), under a lease: they are taken with a claim of this task, and removed
    only once checked; a check whose worker died is taken again by a later task
    once its lease lapses (the minute's sweep queues one: `sweep_noted`)."""
    first_due = PendingCheck.objects.order_by("due_at").values_list("due_at", flat=True).first()
    if first_due is None:
        return []
    wait = (first_due - timezone.now()).total_seconds()
    if wait > 0:
        time.sleep(min(wait, settings.WATCHER_DEBOUNCE_SECONDS))
    claim, lease = uuid.uuid4().hex, settings.RECONCILE_LEASE_SECONDS
    mine = PendingCheck.objects.filter(claim=claim)
    due = PendingCheck.objects.filter(leases.free(), due_at__lte=timezone.now())
    if not due.update(claim=claim, lease_until=dbclock.ahead(lease)):
        return []
    written = dict(mine.values_list("uid", "first_write"))
    try:
        with leases.Heartbeat(lambda: mine.update(lease_until=dbclock.ahead(lease)) > 0, lease):
            found = watcher.check_written(written, gateway=gateway)
    except Exception:
        # Given back for the next task: nothing noted is lost.
        mine.update(claim="", lease_until=None)
        raise
    mine.delete()  # a row written again meanwhile was given back (note_written): it stays
    return found


def sweep_noted() -> bool:
    """Every minute: noted wallets due and taken by no live check (their task was
    lost with a machine, or the worker checking them died) get a check task.
    Whether one was queued (a second one finds nothing to take)."""
    waiting = PendingCheck.objects.filter(leases.free(), due_at__lte=timezone.now()).exists()
    if waiting:
        async_task(CHECK_TASK, task_name="check-written-wallets")
    return waiting
