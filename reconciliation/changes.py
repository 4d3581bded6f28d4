"""Heals, corrections and manual adjustments: propose, approve or reject (then
reconciliation.execution applies them; reconciliation.effects says what they do).

One state machine for all three (models.TRANSITIONS, moved only through
reconciliation.request_states, which also expires), enforced here whoever calls
(admin, command, shell, task): permissions, maker-checker (nobody approves
what they proposed, and above TWO_APPROVERS_ABOVE two distinct people must),
the cutover freeze, expiry, and a stale check against what the approver saw.
Every transition writes a RequestEvent with actor, time and reason.

Corrections of malformed entries are proposed by reconciliation.corrections
and decided and executed here, as heals are.

Approval enqueues the execution (reconciliation.execution), after the commit.
What pages ask before offering these actions (can it be healed, who may
decide) is reconciliation.change_queries.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone
from django_q.tasks import async_task

from reconciliation import change_queries
from reconciliation.effects import heal_amount
from reconciliation.models import (
    OPEN_STATES,
    REPAIR_KINDS,
    BalanceRequest,
    HealStrategy,
    ReasonCode,
    RequestApproval,
    RequestEvent,
    RequestKind,
    RequestState,
    RunStatus,
    Violation,
    ViolationKind,
)
from reconciliation.request_states import RequestRefused, refusal_unless_open, transition
from revassure import flags, freeze, metrics, policy
from revassure.firestore import MISSING, FirestoreGateway, WalletState
from revassure.formatting import points
from revassure.ledger import balances_unchanged, is_points, summed
from revassure.logs import on_commit
from revassure.refusals import require
from revassure.waiting import WaitingKind, announce

log = logging.getLogger(__name__)

AUTO_HEAL_FLAG = "auto_heal_enabled"
AUTO_HEAL_POLICY = "policy:auto-heal"


# -- proposing -----------------------------------------------------------------


def propose_heals(
    violations: Iterable[Violation], *, actor: User, strategy: str, reason: str, gateway: FirestoreGateway
) -> list[BalanceRequest]:
    """Propose a heal for each violation (all or none), with one strategy and reason."""
    require(actor, "reconciliation.propose_balancerequest", "propose heals")
    freeze.require_unfrozen()
    if strategy not in HealStrategy.values:
        raise RequestRefused(f"unknown heal strategy {strategy!r}")
    require_reason(reason)
    violations = list(violations)
    for violation in violations:
        if violation.run.status != RunStatus.COMPLETED:
            raise RequestRefused(f"violation {violation.uid} is not from a completed run")
        if violation.kind != ViolationKind.DRIFT:
            raise RequestRefused(
                f"{violation.uid} has malformed ledger entries or points: a heal would only hide them; "
                f"{change_queries.malformed_way(violation)}"
            )
    uids = [v.uid for v in violations]
    if len(set(uids)) != len(uids):
        raise RequestRefused("select one violation per wallet")
    live = gateway.read_wallets_and_ledgers(uids, concurrency=16)
    for violation in violations:
        state = live[violation.uid]
        assert violation.wallet_points is not None  # a drift's points are integers (checked above)
        if not matches(state, violation.wallet_points, violation.ledger_sum):
            raise RequestRefused(
                f"{violation.uid} changed since run {violation.run_id} "
                f"(now {points(state.points)} points, ledger {points(state.ledger.total)}): "
                "run reconciliation again"
            )
    created = []
    with transaction.atomic():
        open_repairs = BalanceRequest.objects.filter(
            uid__in=uids, kind__in=REPAIR_KINDS, state__in=OPEN_STATES
        )
        if open_repairs:
            raise RequestRefused(
                "; ".join(
                    f"already an open {r.get_kind_display().lower()} request for {r.uid} (#{r.pk})"
                    for r in open_repairs.order_by("uid")
                )
            )
        for violation in violations:
            assert violation.delta is not None  # a drift's delta is an integer (checked above)
            amount = heal_amount(strategy, violation.delta)
            request = create_request(
                kind=RequestKind.HEAL,
                uid=violation.uid,
                violation=violation,
                strategy=strategy,
                amount=amount,
                reason_code=ReasonCode.CORRECTION,
                reason=reason,
                expected_points=violation.wallet_points,
                expected_ledger_sum=violation.ledger_sum,
                actor=actor,
            )
            created.append(request)
        for request in created:
            _auto_heal(request, live[request.uid])
    return created


def propose_adjustment(
    *,
    actor: User,
    uid: str,
    amount: int,
    reason_code: str,
    reason: str,
    gateway: FirestoreGateway,
    settles: str = "",
) -> BalanceRequest:
    """Propose a manual adjustment: a signed integer number of points for one wallet.

    `settles`: the business identity (its ledger entry id) whose settlement
    break the adjustment closes. An identity has one standing adjustment at
    most (proposed, approved or applied): another is refused, whichever row,
    run or import of a statement it comes from, so a break is paid out once."""
    require(actor, "reconciliation.propose_balancerequest", "propose manual adjustments")
    freeze.require_unfrozen()
    if not is_points(amount) or amount == 0:
        raise RequestRefused("the amount must be a non-zero whole number of points")
    if abs(amount) > policy.MAX_POINTS:
        raise RequestRefused(f"the amount {amount} is beyond a 64-bit balance (at most ±{policy.MAX_POINTS})")
    if reason_code not in ReasonCode.values:
        raise RequestRefused(f"unknown reason code {reason_code!r}")
    require_reason(reason)
    _require_unsettled(settles)
    state = gateway.read_wallets_and_ledgers([uid], concurrency=1)[uid]
    if not state.exists:
        raise RequestRefused(f"there is no wallet {uid!r}")
    if not (is_points(state.points) and is_points(state.ledger.total)):
        raise RequestRefused(f"wallet {uid} has malformed points or ledger entries: reconcile it first")
    _require_balance_allowed(uid, state.points, amount)
    try:
        with transaction.atomic():
            return create_request(
                kind=RequestKind.ADJUSTMENT,
                uid=uid,
                amount=amount,
                reason_code=reason_code,
                reason=reason,
                settles=settles,
                expected_points=state.points,
                expected_ledger_sum=state.ledger.total,
                actor=actor,
            )
    except IntegrityError:
        if not settles:
            raise
        _require_unsettled(settles)  # proposed by someone else meanwhile: say which
        raise RequestRefused(
            f"another adjustment for {settles} was proposed at the same moment: look at its requests"
        ) from None


def _require_unsettled(settles: str) -> None:
    if not settles:
        return
    standing = change_queries.settling_adjustments([settles]).get(settles)
    if standing is not None:
        raise RequestRefused(change_queries.settled_refusal(standing))


def create_request(*, actor: User, amount: int, **fields: Any) -> BalanceRequest:
    """A new proposal (state proposed) with its first trail event, its approvals
    needed and its expiry; announced to the approvers once committed. The
    caller has checked everything else, in its transaction."""
    request = BalanceRequest.objects.create(
        **fields,
        amount=amount,
        proposed_by=actor,
        required_approvals=2 if abs(amount) > settings.TWO_APPROVERS_ABOVE else 1,
        expires_at=timezone.now() + timedelta(hours=settings.PROPOSAL_TTL_HOURS),
    )
    RequestEvent.objects.create(
        request=request, to_state=RequestState.PROPOSED, actor=actor, reason=fields["reason"]
    )
    on_commit(lambda: metrics.balance_request(kind=request.kind, state=RequestState.PROPOSED))
    announce(WaitingKind.BALANCE_REQUEST, request.pk)
    log.info(
        "balance request proposed", extra={"request_id": request.pk, "uid": request.uid, "amount": amount}
    )
    return request


def _auto_heal(request: BalanceRequest, live) -> None:
    """The materiality policy: small rebalances need no second person (still audited)."""
    if (
        request.strategy != HealStrategy.REBALANCE
        or abs(request.amount) > settings.AUTO_HEAL_MAX_DRIFT
        or request.required_approvals > 1
        or not flags.is_enabled(AUTO_HEAL_FLAG)
    ):
        return
    RequestApproval.objects.create(
        request=request, policy=AUTO_HEAL_POLICY, seen_points=live.points, seen_ledger_sum=live.ledger.total
    )
    transition(
        request,
        RequestState.APPROVED,
        actor_label=AUTO_HEAL_POLICY,
        reason=f"drift {abs(request.amount)} is within the auto-heal limit ({settings.AUTO_HEAL_MAX_DRIFT})",
    )
    request.approved_at = timezone.now()
    request.save(update_fields=["approved_at"])
    enqueue_execution(request.pk)


# -- deciding ------------------------------------------------------------------


def approve(request_id: int, *, actor: User, gateway: FirestoreGateway, reason: str = "") -> BalanceRequest:
    """Record actor's approval; the request is approved once it has enough of them.

    The approver's view is the wallet as Firestore has it now; for a heal it
    must still be exactly what the proposal saw, or the request goes stale.
    `reason` (optional) is kept with the approval and in the trail.
    """
    require(actor, "reconciliation.approve_balancerequest", "approve requests")
    freeze.require_unfrozen()
    with transaction.atomic():
        request = BalanceRequest.objects.select_for_update().get(pk=request_id)
        refusal = refusal_unless_open(request)
        if refusal is None:
            _approve_locked(request, actor=actor, gateway=gateway, reason=reason.strip())
    if refusal is not None:
        raise RequestRefused(refusal)
    return request


def _approve_locked(request: BalanceRequest, *, actor, gateway: FirestoreGateway, reason: str) -> None:
    if request.proposed_by_id == actor.pk:
        raise RequestRefused("you proposed this request: someone else must approve it")
    if request.approvals.filter(approver=actor).exists():
        raise RequestRefused("you have approved this request already: it needs a different approver")
    live = gateway.read_wallets_and_ledgers([request.uid], concurrency=1)[request.uid]
    if request.kind in REPAIR_KINDS and not matches(
        live, request.expected_points, request.expected_ledger_sum
    ):
        transition(
            request,
            RequestState.STALE,
            actor=actor,
            reason=(
                f"wallet changed since proposed: now {points(live.points)} points, "
                f"ledger {points(live.ledger.total)}"
            ),
        )
        return
    if request.kind == RequestKind.CORRECTION:
        found = gateway.ledger_entry_amounts([(request.uid, request.supersedes)])
        amount = found.get((request.uid, request.supersedes), MISSING)
        if (request.uid, request.supersedes) not in found or summed(amount):
            now = "is gone from the ledger" if not found else f"now holds {points(amount)}"
            transition(
                request,
                RequestState.STALE,
                actor=actor,
                reason=f"entry {request.supersedes} {now}: there is nothing left to correct",
            )
            return
    if request.kind == RequestKind.ADJUSTMENT and is_points(live.points):
        _require_balance_allowed(request.uid, live.points, request.amount)
    RequestApproval.objects.create(
        request=request,
        approver=actor,
        seen_points=live.points,
        seen_ledger_sum=live.ledger.total,
        reason=reason,
    )
    because = f": {reason}" if reason else ""
    approvals = request.approvals.count()
    if approvals < request.required_approvals:
        RequestEvent.objects.create(
            request=request,
            from_state=request.state,
            to_state=request.state,
            actor=actor,
            reason=f"approval {approvals} of {request.required_approvals}{because}",
        )
        return
    transition(request, RequestState.APPROVED, actor=actor, reason=f"approved{because}")
    request.approved_at = timezone.now()
    request.save(update_fields=["approved_at"])
    enqueue_execution(request.pk)


def reject(request_id: int, *, actor: User, reason: str) -> BalanceRequest:
    require(actor, "reconciliation.approve_balancerequest", "reject requests")
    require_reason(reason)
    with transaction.atomic():
        request = BalanceRequest.objects.select_for_update().get(pk=request_id)
        refusal = refusal_unless_open(request)
        if refusal is None:
            if request.proposed_by_id == actor.pk:
                raise RequestRefused("you proposed this request: someone else must decide on it")
            transition(request, RequestState.REJECTED, actor=actor, reason=reason)
    if refusal is not None:
        raise RequestRefused(refusal)
    return request


# -- helpers -------------------------------------------------------------------


def matches(state: WalletState, points: int, ledger_sum: int) -> bool:
    """The wallet is exactly as seen: same integers (a float 10.0 is not 10)."""
    return balances_unchanged(
        state.points, state.ledger.total, seen_points=points, seen_ledger_sum=ledger_sum
    )


def _require_balance_allowed(uid: str, points: int, amount: int) -> None:
    refusal = policy.balance_refusal(points, amount)
    if refusal:
        raise RequestRefused(f"{uid}: {refusal}")


def require_reason(reason: str) -> None:
    if not reason or not reason.strip():
        raise RequestRefused("a reason is required")


def enqueue_execution(request_id: int) -> None:
    """Have a worker execute an approved request once this transaction commits (reconciliation.execution)."""
    on_commit(
        lambda: async_task(
            "reconciliation.tasks.execute_request", request_id, task_name=f"balance-request-{request_id}"
        )
    )
