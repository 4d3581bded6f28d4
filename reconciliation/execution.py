"""Approved heals, corrections and adjustments applied to Firestore, once.

Execution runs in a django-q task (reconciliation.tasks.execute_request, enqueued
by changes.enqueue_execution when a request is approved). The Firestore side is
one conditional commit that is idempotent by construction (see
FirestoreGateway.apply_balance_change), and the database claim makes a second
delivery a no-op, so the balance moves once or not at all, and the request says
which. A request waits out a freeze; a worker that died mid-way leaves a claim
that release_abandoned gives back.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from reconciliation.changes import enqueue_execution
from reconciliation.models import BalanceRequest, HealStrategy, RequestKind, RequestState
from reconciliation.request_states import transition
from revassure import dbclock, freeze, policy
from revassure.firestore import BalanceChange, FirestoreGateway
from revassure.formatting import points

log = logging.getLogger(__name__)


def execute(request_id: int, *, gateway: FirestoreGateway) -> BalanceRequest:
    """Apply an approved request to Firestore, once. Waits out a freeze."""
    request = BalanceRequest.objects.get(pk=request_id)
    if request.state != RequestState.APPROVED:
        return request
    if freeze.current() is not None:
        log.info("balance request waits for the freeze to end", extra={"request_id": request_id})
        return request
    claimed = BalanceRequest.objects.filter(
        pk=request_id, state=RequestState.APPROVED, claimed_at__isnull=True
    )
    if claimed.update(claimed_at=dbclock.now()) != 1:  # judged by release_abandoned, on that clock
        return request  # another worker has it
    request.refresh_from_db()
    change = change_of(request)
    refusal = _balance_refusal(change)
    if refusal:
        with transaction.atomic():
            request = BalanceRequest.objects.select_for_update().get(pk=request_id)
            transition(request, RequestState.FAILED, actor_label="worker", reason=f"refused: {refusal}")
        return request
    try:
        outcome = gateway.apply_balance_change(change)
    except Exception as exc:
        # An error after the commit left Firestore is ambiguous: ask the marker.
        try:
            applied = gateway.balance_change_applied(change)
        except Exception:
            # Firestore cannot say: leave it claimed; the sweeper retries it later.
            log.exception("balance request outcome unknown", extra={"request_id": request_id})
            raise exc from None
        with transaction.atomic():
            request = BalanceRequest.objects.select_for_update().get(pk=request_id)
            if applied:
                return _applied(request, {"note": "confirmed after an error: " + repr(exc)})
            transition(
                request, RequestState.FAILED, actor_label="worker", reason=f"{type(exc).__name__}: {exc}"
            )
            return request
    with transaction.atomic():
        request = BalanceRequest.objects.select_for_update().get(pk=request_id)
        if outcome.status == "stale":
            transition(
                request,
                RequestState.STALE,
                actor_label="worker",
                reason=(
                    f"wallet changed since approval: {points(outcome.points_before)} points and ledger "
                    f"{points(outcome.ledger_before)}; approved at {points(change.expected_points)} and "
                    f"{points(change.expected_ledger_sum)}"
                ),
            )
            return request
        return _applied(
            request,
            {
                "entry_id": change.marker_id if change.mode != "rebalance" else None,
                "audit_log_id": change.marker_id if change.mode == "rebalance" else None,
                "points_before": outcome.points_before,
                "points_after": outcome.points_after,
                "ledger_before": outcome.ledger_before,
                "already_applied": outcome.status == "already_applied",
            },
        )


def resume_waiting() -> int:
    """Enqueue every approved request nobody is executing (after an unfreeze)."""
    waiting = list(
        BalanceRequest.objects.filter(state=RequestState.APPROVED, claimed_at__isnull=True).values_list(
            "pk", flat=True
        )
    )
    for request_id in waiting:
        enqueue_execution(request_id)
    return len(waiting)


def release_abandoned(older_than: timedelta) -> int:
    """Give back claims of workers that died mid-way, so the requests run again
    (the Firestore side is idempotent: a committed change is found, not redone).
    Claims are written and judged by the database's clock (revassure.dbclock)."""
    abandoned = BalanceRequest.objects.filter(
        state=RequestState.APPROVED, claimed_at__lt=dbclock.ago(older_than)
    )
    return abandoned.update(claimed_at=None)


def change_of(request: BalanceRequest) -> BalanceChange:
    """The Firestore change an approved request makes, with the numbers its last approver saw."""
    seen = request.approvals.order_by("-created_at", "-id").first()
    assert seen is not None  # an approved request: approved at least once
    # A correction appends its entry as a post adjustment does: the wallet untouched.
    mode, entry_type = {
        RequestKind.HEAL: (request.strategy, "reconciliation"),
        RequestKind.CORRECTION: (HealStrategy.POST_ADJUSTMENT.value, "correction"),
        RequestKind.ADJUSTMENT: ("adjustment", "adjustment"),
    }[RequestKind(request.kind)]
    record = {
        "type": entry_type,
        "requestId": request.pk,
        "reasonCode": request.reason_code,
        "reason": request.reason,
        **({"settles": request.settles} if request.settles else {}),
        **({"supersedes": request.supersedes} if request.supersedes else {}),
        "proposedBy": request.proposed_by.get_username(),
        "approvedBy": [
            a.approver.get_username() if a.approver else a.policy for a in request.approvals.all()
        ],
    }
    return BalanceChange(
        uid=request.uid,
        mode=mode,
        amount=request.amount,
        expected_points=seen.seen_points,
        expected_ledger_sum=seen.seen_ledger_sum,
        marker_id=request.ledger_entry_id,
        record=record,
    )


def _applied(request: BalanceRequest, result: dict) -> BalanceRequest:
    request.result = result
    request.applied_at = timezone.now()
    request.save(update_fields=["result", "applied_at"])
    transition(request, RequestState.APPLIED, actor_label="worker", reason="applied to Firestore")
    return request


def _balance_refusal(change: BalanceChange) -> str:
    """The negative-balance policy at execution time, under the setting in force then.

    Sound without reading the wallet here: the gateway's transaction applies the
    change only while the wallet holds exactly `expected_points`, so the balance
    it leaves is `expected_points + amount`, which is what is checked.
    """
    if change.mode != "adjustment":
        return ""  # a heal moves the wallet to its ledger, or the ledger to its wallet
    return policy.balance_refusal(change.expected_points, change.amount)
