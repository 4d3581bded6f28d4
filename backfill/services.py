"""Provider events applied through one code path: the webhook's drain, one
delivery's task, replays of files and of stored deliveries (stored first by
backfill.intake)."""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from backfill import drain, events, runs
from backfill.models import (
    EventSource,
    EventStatus,
    ProviderEventDelivery,
)
from backfill.rules import decide
from revassure import metrics
from revassure.firestore import FirestoreGateway
from revassure.policy import negative_balance_allowed

log = logging.getLogger(__name__)


def apply_webhook_delivery(delivery_id: int, *, gateway: FirestoreGateway) -> ProviderEventDelivery:
    """Apply a delivery the webhook received, counting its outcome
    (revassure_webhook_deliveries_total); replays count theirs as replay events."""
    delivery = apply_delivery(delivery_id, gateway=gateway)
    metrics.webhook_delivery(delivery.status)
    return delivery


def requeue(delivery: ProviderEventDelivery) -> None:
    """Give a quarantined delivery another chance after a fix (it is parsed again)."""
    try:
        event = events.parse(delivery.raw)
    except events.Unusable as exc:
        delivery.reason = str(exc)
        delivery.save(update_fields=["reason"])
        return
    delivery.event_id, delivery.event_type = event.event_id, event.type
    delivery.user_id, delivery.entry_id = event.user_id, event.entry_id
    delivery.status = EventStatus.RECEIVED
    delivery.save(update_fields=["event_id", "event_type", "user_id", "entry_id", "status"])


def apply_delivery(delivery_id: int, *, gateway: FirestoreGateway) -> ProviderEventDelivery:
    """Apply a stored delivery to Firestore; record the outcome on the delivery."""
    delivery = ProviderEventDelivery.objects.get(pk=delivery_id)
    if delivery.status not in (EventStatus.RECEIVED, EventStatus.DEFERRED, EventStatus.FAILED):
        return delivery
    event = event_of(delivery)
    if event is None:
        return delivery
    try:
        outcome = gateway.apply_provider_event(
            event, decide=decide, allow_negative=negative_balance_allowed(), delivery_id=delivery.pk
        )
        status, reason = outcome.status, outcome.reason
    except Exception as exc:  # retried by the gateway already: give up on this one, visibly
        log.exception("provider event failed", extra={"delivery_id": delivery_id})
        status, reason = EventStatus.FAILED, f"{type(exc).__name__}: {exc}"
    delivery.status, delivery.reason = status, reason
    delivery.attempts += 1
    if status == EventStatus.APPLIED:
        delivery.applied_at = timezone.now()
    delivery.save(update_fields=["status", "reason", "attempts", "applied_at"])
    log.info("provider event %s", status, extra={"delivery_id": delivery_id, "event_id": delivery.event_id})
    return delivery


def stages(deliveries: list[ProviderEventDelivery]) -> list[tuple[list, list]]:
    """The deliveries still to apply, as stages of (payments, others), each an
    (event, delivery) list: a stage's payments go in batched commits, then its
    others (reversals, which need reads of their original) one by one.

    A stage never holds a wallet's payment that comes after one of that
    wallet's reversals in the file, so applying stage by stage decides every
    wallet's events in file order, exactly as a dry run plans them. Most
    batches are one stage (payments only, or reversals of earlier batches).
    """
    result: list[tuple[list, list]] = [([], [])]
    reversed_here: set[str] = set()  # wallets with a reversal in the current stage
    for delivery in deliveries:
        if delivery.status != EventStatus.RECEIVED:
            continue
        event = event_of(delivery)
        if event is None:
            continue
        if event.amount > 0:
            if event.user_id in reversed_here:
                result.append(([], []))
                reversed_here = set()
            result[-1][0].append((event, delivery))
        else:
            reversed_here.add(event.user_id)
            result[-1][1].append((event, delivery))
    return result


def event_of(delivery: ProviderEventDelivery) -> events.ProviderEvent | None:
    """The event a stored delivery carries, by the intake's rules; None, with the
    delivery quarantined and the reason saved, when those rules now refuse it
    (a row stored under older, looser rules): it never blocks the others."""
    try:
        return events.parse(delivery.raw)
    except events.Unusable as exc:
        delivery.status, delivery.reason = EventStatus.QUARANTINED, str(exc)
        delivery.attempts += 1
        delivery.save(update_fields=["status", "reason", "attempts"])
        log.warning("stored provider event unusable", extra={"delivery_id": delivery.pk, "reason": str(exc)})
        return None


def commit_payments(payments: list, *, gateway: FirestoreGateway, known: dict) -> tuple[dict, str]:
    """Apply payments to Firestore in batched commits (no database access, so a
    replay can run it beside its database work): (outcomes by delivery id, the
    error that failed the payments without one after the gateway's retries,
    or "")."""
    outcomes: dict = {}
    try:
        gateway.apply_payments(
            [(event, d.pk) for event, d in payments], decide=decide, known=known, outcomes=outcomes
        )
        return outcomes, ""
    except Exception as exc:  # after the gateway's retries: the rest fail visibly
        log.exception("provider event batch failed")
        return outcomes, f"{type(exc).__name__}: {exc}"


def save_payment_outcomes(payments: list, outcomes: dict, failure: str) -> None:
    """Record what commit_payments did on the deliveries (and their objects)."""
    now = timezone.now()
    by_outcome: dict[tuple[str, str], list[int]] = defaultdict(list)
    for _, delivery in payments:
        outcome = outcomes.get(delivery.pk)
        delivery.status, delivery.reason = (
            (outcome.status, outcome.reason) if outcome else (EventStatus.FAILED, failure)
        )
        by_outcome[(delivery.status, delivery.reason)].append(delivery.pk)
    # One UPDATE per distinct outcome (nearly always one: applied), not per row.
    for (status, reason), ids in by_outcome.items():
        ProviderEventDelivery.objects.filter(pk__in=ids).update(
            status=status,
            reason=reason,
            attempts=F("attempts") + 1,
            applied_at=now if status == EventStatus.APPLIED else None,
        )


def apply_one_by_one(others: list, *, gateway: FirestoreGateway) -> None:
    for _, delivery in others:
        applied = apply_delivery(delivery.pk, gateway=gateway)
        delivery.status, delivery.reason = applied.status, applied.reason


def drain_webhooks(*, gateway: FirestoreGateway, deadline: float | None = None, handoff: str = "") -> int:
    """Apply the waiting webhook deliveries; the number handled.

    Without the lease (another worker drains) it asks that drainer to look
    again, then tries the lease once more (the holder may have looked already)
    and returns if it is still taken: arrivals are never left waiting for a
    task that gave up. At `deadline` (time.monotonic()) it hands the lease to a
    next task; stopped by an error, it lets go and leaves a request up to a
    next task."""
    if runs.live_stored_replay():
        # Ops are replaying stored deliveries, which takes these too: the drain
        # steps aside so each delivery is applied and counted by one of them;
        # the sweep drains what arrives meanwhile once the replay has ended, or
        # its lease lapsed (its worker died: intake never waits on a dead replay).
        return 0
    lease = drain.claim(handoff)
    if lease is None:
        drain.ask_again()
        # The holder looks for a request only after letting go: it may have
        # looked before ours, so try once more. Failing again means it still
        # holds the lease, and will see the request when it lets go.
        lease = drain.claim()
        if lease is None:
            return 0
    handled, known = 0, dict[str, tuple[int, Any]]()  # the gateway's `known`, kept across batches
    try:
        while True:
            drain.clear_asked()
            batch = list(drain.waiting()[: drain.DRAIN_BATCH])
            if not batch:
                drain.release(lease)
                lease = None
                if not drain.asked_again():
                    return handled
                lease = drain.claim()  # arrivals since the last look, whose task found us busy
                if lease is None:
                    return handled  # another drainer took them
                continue
            handled += apply_batch(batch, gateway=gateway, known=known)
            if not drain.renew(lease):
                log.warning("webhook drain lease lost; this worker stops")
                lease = None
                return handled
            if deadline is not None and time.monotonic() >= deadline:
                drain.enqueue(handoff=lease)
                lease = None  # handed over, not released
                return handled
            if len(batch) < drain.DRAIN_BATCH:
                time.sleep(drain.FILL_PAUSE)
    finally:
        if lease is not None:  # stopped by an error: arrivals during the batch count on a drainer
            drain.release(lease)
            if drain.asked_again():
                drain.enqueue()


def apply_batch(batch: list[ProviderEventDelivery], *, gateway: FirestoreGateway, known: dict) -> int:
    """Apply one batch (arrival order) as the file replay does; count outcomes."""
    for payments, others in stages(batch):
        outcomes, failure = commit_payments(payments, gateway=gateway, known=known)
        with transaction.atomic():
            save_payment_outcomes(payments, outcomes, failure)
        apply_one_by_one(others, gateway=gateway)
    applied_to = {d.user_id for d in batch if d.status == EventStatus.APPLIED}
    retried = retry_deferred_webhooks(applied_to, gateway=gateway)
    for status, count in (Counter(d.status for d in batch) + retried).items():
        metrics.webhook_delivery(status, count)
    log.info(
        "webhook deliveries applied",
        extra={"deliveries": len(batch), "first_id": batch[0].pk, "last_id": batch[-1].pk},
    )
    return len(batch)


def retry_deferred_webhooks(users: set[str], *, gateway: FirestoreGateway) -> Counter:
    """Reversals that came before their original, for wallets a batch just
    credited: tried again now that the original may be in the ledger (the file
    replay does the same at its end). Outcomes that moved, counted."""
    moved: Counter = Counter()
    if not users:
        return moved
    deferred = ProviderEventDelivery.objects.filter(
        source=EventSource.WEBHOOK, migration__isnull=True, status=EventStatus.DEFERRED, user_id__in=users
    ).order_by("pk")
    for delivery in deferred:
        after = apply_delivery(delivery.pk, gateway=gateway)
        if after.status != EventStatus.DEFERRED:
            moved[after.status] += 1
    return moved
