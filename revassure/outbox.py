"""Outboxes: what must be told to someone (an alert's notification, a "waiting
for you" email), written as a row in the transaction that decided it, and sent
by a worker of the notify cluster.

django-q2's Redis broker has no receipts: a task a machine took and died with
is never handed out again, and a send enqueued after the commit would be lost
with it. So the decision leaves a row (an `Outbox` model) and its task carries
the row's id; the worker takes the row for one attempt under a lease
(revassure/leases.py: its name and an expiry on the database's clock), makes
the attempt, and marks the row sent or failed, or due again (a retry). The
minute's sweep hands to a worker again a row whose lease lapsed (its worker
died mid-attempt) or whose task was lost (the notify cluster's broker holds
nothing and it was queued more than a lease ago, or it was queued longer ago
than a task may wait), as reconciliation/recovery.py does for chunks.

Each attempt is taken once: `claim` is a conditional update on the row's state,
its attempt count and its lease, so a second task for the same attempt (the lost
one arriving after all, a retry the sweep queued too) finds it taken or done and
does nothing. What a claim cannot make exactly once is the send itself: a worker
that dies after the message left and before the row says so is followed by a
second attempt.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django_q.brokers import get_broker

from revassure import dbclock, leases


class OutboxState(models.TextChoices):
    PENDING = "pending", "to send"  # its first attempt, or a retry due at queued_at
    SENT = "sent"
    FAILED = "failed"  # every attempt failed: it is not tried again


class Outbox(models.Model):
    """One thing to tell, sent by a worker of the notify cluster under a lease."""

    state = models.CharField(max_length=16, choices=OutboxState, default=OutboxState.PENDING)
    # Attempts taken so far (a worker's claim counts one, even if the worker died in it).
    attempts = models.PositiveSmallIntegerField(default=0)
    holder = models.CharField(max_length=255, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    # When its task was last queued, or when its retry is due (by the database's clock).
    queued_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = models.Manager()  # declared: the functions below take any outbox model

    class Meta:
        abstract = True
        indexes = [
            models.Index(
                fields=["queued_at"], condition=Q(state=OutboxState.PENDING), name="%(class)s_pending"
            )
        ]


def notify_cluster() -> dict:
    """The notify cluster's own django-q2 options (timeout, retry)."""
    return settings.Q_CLUSTER["ALT_CLUSTERS"][settings.NOTIFY_CLUSTER_NAME]


def lease_seconds() -> int:
    """How long a worker holds a row for one attempt: the notify cluster's task
    timeout, past which the cluster has stopped the task anyway (a send ends
    within OUTBOUND_DEADLINE_SECONDS), so no live attempt ever loses its row."""
    return notify_cluster()["timeout"]


def claim(model: type[Outbox], pk: int, attempt: int) -> bool:
    """Take row `pk` for its attempt number `attempt` (the first is 1): True for
    one worker only. False when it is sent, failed, held by a live worker, or
    that attempt was taken already."""
    return (
        model.objects.filter(pk=pk, state=OutboxState.PENDING, attempts=attempt - 1)
        .filter(leases.free())
        .update(attempts=attempt, holder=leases.holder(), lease_until=dbclock.ahead(lease_seconds()))
        == 1
    )


def finish(model: type[Outbox], pk: int, attempt: int, *, sent: bool, retry_in: float | None = None) -> None:
    """After the attempt: sent, or due again in `retry_in` seconds (pending, its
    lease let go), or failed for good."""
    mine = model.objects.filter(pk=pk, state=OutboxState.PENDING, attempts=attempt)
    if not sent and retry_in is not None:
        mine.update(holder="", lease_until=None, queued_at=dbclock.ahead(retry_in))
        return
    mine.update(
        state=OutboxState.SENT if sent else OutboxState.FAILED,
        lease_until=None,
        finished_at=dbclock.now(),
    )


def lost(model: type[Outbox], *, max_attempts: int) -> list[tuple[int, int]]:
    """(row, its next attempt) for each row a dead worker held or whose task was
    lost, queued again from now (the caller hands each to a worker). A row whose
    workers died `max_attempts` times is failed instead."""
    waited = Q(queued_at__lt=dbclock.ago(notify_cluster()["retry"]))
    if get_broker(settings.NOTIFY_CLUSTER_NAME).queue_size() == 0:
        waited |= Q(queued_at__isnull=True) | Q(queued_at__lt=dbclock.ago(lease_seconds()))
    rows = model.objects.filter(state=OutboxState.PENDING).filter(
        leases.lapsed() | (Q(lease_until__isnull=True) & waited)
    )
    rows.filter(attempts__gte=max_attempts).update(
        state=OutboxState.FAILED, lease_until=None, finished_at=dbclock.now()
    )
    found = list(rows.filter(attempts__lt=max_attempts).values_list("pk", "attempts"))
    # Queued from now: not handed out again until another lease has passed. The
    # same conditions: a row a worker claimed meanwhile keeps its lease.
    rows.filter(pk__in=[pk for pk, _ in found]).update(holder="", lease_until=None, queued_at=dbclock.now())
    return [(pk, attempts + 1) for pk, attempts in found]
