"""Webhook deliveries applied in batches by the workers: the waiting queue,
the wake-up and the one drainer's lease (the drain itself is
services.drain_webhooks).

The webhook stores each delivery raw and answers; `wake` then makes sure a
drainer will look: it raises the one request flag, and enqueues a drain task
only when no worker holds the lease (a burst of a thousand arrivals enqueues a
handful of tasks, not a thousand). The drain takes the one lease there is, and
applies what is waiting in arrival order, DRAIN_BATCH at a time, through the
file replay's path: a batch's payments in batched commits, its reversals one
by one by their own rules, staged so a wallet's events are decided in arrival
order (services.stages). It goes on while deliveries keep coming (pausing
FILL_PAUSE after a batch that was not full), then lets go, and looks for the
flag after letting go; a task that found the lease taken raises the flag, then
tries the lease once more; a drainer stopped by an error lets go and, if a
request is up, enqueues a next drain. Raising the flag and then looking at the
lease, on one side, and letting go and then looking at the flag, on the
other, means one of the two always sees the other. A holder that leaves
without letting go (a handoff at its task's deadline, a lost lease) is
followed by the task it handed to or by whoever takes the lapsed lease, which
looks first. Only a killed worker leaves requests waiting: until its lease
lapses and the flag goes stale (60 s), or the minute's sweep.

Exactly once: a delivery's outcome is saved after Firestore took it; a worker
killed in between leaves it `received`, and the next drain applies it again,
which Firestore answers with the entry this very delivery wrote (`applied`,
once). A lone delivery in a quiet hour is applied as soon as a worker picks up
its task (the broker's poll, well under a second), never after a batch fills.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Count, Min, Q, QuerySet
from django.utils import timezone
from django_q.tasks import async_task

from backfill.models import EventSource, EventStatus, ProviderEventDelivery, WebhookDrain
from revassure import dbclock

log = logging.getLogger(__name__)

DRAIN_TASK = "backfill.tasks.drain_webhooks"
DRAIN_BATCH = 100  # deliveries applied, then saved, together (as the file replay's checkpoint)
# After a batch that was not full, the drainer waits this long before looking
# again, so that under a stream of arrivals batches fill instead of costing a
# round of queries and a commit for a few deliveries each. The first look is
# never delayed: a lone delivery is applied as soon as its task runs.
FILL_PAUSE = 0.1
# A request this old is raised again by the next arrival (and a drain enqueued
# if nobody holds the lease): what a lost task or a killed drainer leaves.
STALE_QUEUED = timedelta(seconds=60)
QUEUED_SQL = "SELECT 1 FROM backfill_webhookdrain WHERE id = 1 AND queued = %s AND queued_at >= %s"


def waiting() -> QuerySet[ProviderEventDelivery]:
    """Webhook deliveries stored and not yet applied, oldest first."""
    return ProviderEventDelivery.objects.filter(
        source=EventSource.WEBHOOK, migration__isnull=True, status=EventStatus.RECEIVED
    ).order_by("pk")


def queue_state() -> tuple[int, float]:
    """(deliveries waiting, seconds the oldest has waited; 0 when none)."""
    found = waiting().order_by().aggregate(count=Count("pk"), oldest=Min("received_at"))
    oldest = found["oldest"]
    return found["count"], (timezone.now() - oldest).total_seconds() if oldest else 0.0


def wake() -> None:
    """After a delivery is stored (committed): a drainer will look at it.

    A cheap read first (one indexed row, plain SQL: this runs in every webhook
    request, and building the query was a third of the request's time): while
    the request flag is up, nothing is written. Otherwise the flag is raised by
    a conditional update (of many arrivals at once one raises it), then the
    lease is read: a holder will see the flag after letting go; with nobody
    holding it, a drain task is enqueued. A flag older than STALE_QUEUED (its
    task lost) is raised again."""
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(QUEUED_SQL, [True, connection.ops.adapt_datetimefield_value(now - STALE_QUEUED)])
        if cursor.fetchone() is not None:
            return
    fresh = Q(queued=True, queued_at__gte=now - STALE_QUEUED)
    if not WebhookDrain.objects.filter(~fresh, pk=1).update(queued=True, queued_at=now):
        _, created = WebhookDrain.objects.get_or_create(pk=1, defaults={"queued": True, "queued_at": now})
        if not created:
            return  # another arrival raised it in between, and saw to a drainer
    if WebhookDrain.objects.filter(~lease_free(), pk=1).exists():
        # A drainer holds the lease: it looks for the flag just set after it
        # lets go (and this read came after the flag), so it takes this arrival
        # up without a task. During a burst the drainer clears the flag before
        # each batch: a task per batch, which then only finds it busy, was most
        # of the workers' time.
        return
    enqueue()


def enqueue(handoff: str = "") -> None:
    async_task(DRAIN_TASK, handoff, task_name=f"webhook-drain-{uuid.uuid4().hex[:8]}")


def lease_free() -> Q:
    """The lease nobody holds: never taken, let go, or lapsed (its worker died),
    by the database's clock (revassure.dbclock: machines' clocks differ)."""
    return Q(lease="") | Q(lease_until__lt=dbclock.now())


def claim(handoff: str = "") -> str | None:
    """Take the drain's lease (free, lapsed, or handed over by the task before):
    the new lease, or None while another worker drains. It lasts
    WEBHOOK_DRAIN_LEASE_SECONDS by the database's clock."""
    lease = uuid.uuid4().hex
    free = lease_free()
    if handoff:
        free |= Q(lease=handoff)
    until = dbclock.ahead(settings.WEBHOOK_DRAIN_LEASE_SECONDS)
    if WebhookDrain.objects.filter(free, pk=1).update(lease=lease, lease_until=until):
        return lease
    _, created = WebhookDrain.objects.get_or_create(pk=1, defaults={"lease": lease, "lease_until": until})
    return lease if created else None


def renew(lease: str) -> bool:
    until = dbclock.ahead(settings.WEBHOOK_DRAIN_LEASE_SECONDS)
    return bool(
        WebhookDrain.objects.filter(pk=1, lease=lease).update(
            lease_until=until, last_drained_at=dbclock.now()
        )
    )


def release(lease: str) -> None:
    WebhookDrain.objects.filter(pk=1, lease=lease).update(lease="", lease_until=None)


def clear_asked() -> None:
    """The drainer is about to look at what waits: arrivals from now on ask again."""
    WebhookDrain.objects.filter(pk=1).update(queued=False)


def ask_again() -> None:
    """A task that found another drainer at work asks it to look once more."""
    WebhookDrain.objects.filter(pk=1).update(queued=True, queued_at=timezone.now())


def asked_again() -> bool:
    return WebhookDrain.objects.filter(pk=1, queued=True).exists()


def sweep() -> int:
    """Every minute: deliveries left waiting (a lost task, a dead drainer whose
    lease lapsed) get a drain. The number waiting."""
    count, oldest = queue_state()
    if count and oldest > settings.WEBHOOK_DRAIN_LEASE_SECONDS:
        enqueue()
    return count
