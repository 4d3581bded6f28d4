"""What pages ask about balance change requests before offering an action, read-only: whether a
violation can be healed now (and what blocks it), which adjustment already settles a payment, why a
person cannot decide a request, and the requests they may decide. The rules are those
reconciliation/changes.py enforces when the action is taken; asking here changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import Q, QuerySet
from django.utils import timezone

from reconciliation.models import (
    OPEN_STATES,
    REPAIR_KINDS,
    STANDING_STATES,
    BalanceRequest,
    RequestKind,
    RequestState,
    RunStatus,
    Violation,
    ViolationKind,
)
from reconciliation.reports import describe_details
from revassure.formatting import signed
from revassure.refusals import may

# -- what can be healed (pages ask before offering a heal) -----------------------


def heal_refusal(violation: Violation, heal: BalanceRequest | None = None) -> str:
    """Why a violation cannot be proposed for a heal now, or "" when it can.
    `heal` is what blocks it, from blocking_heals: the open heal of its
    wallet (or its open correction), or the heal that was applied for it."""
    if heal is not None and heal.state in OPEN_STATES:
        return f"its wallet already has {heal.title.lower()} ({heal.get_state_display().lower()})"
    if violation.kind != ViolationKind.DRIFT:
        problem = describe_details(violation.details) or "malformed points or entries"
        return f"malformed, cannot be healed: {problem}; {malformed_way(violation)}"
    if violation.run.status != RunStatus.COMPLETED:
        return f"run {violation.run_id} is not completed"
    if heal is not None:
        return f"healed already by {heal.title.lower()}"
    return ""


def malformed_way(violation: Violation) -> str:
    """What can be done about a malformed violation instead of a heal."""
    if violation.wallet_points is not None and violation.details.get("malformed_entries"):
        return "propose a correction of the malformed entry from its break, or accept the difference"
    return "fix the data first"


def blocking_heals(violations: Iterable[Violation]) -> dict[int, BalanceRequest]:
    """{violation pk: the request that stops a new heal}: the open heal or
    correction of its wallet (one per wallet at most), else the heal applied
    for this very violation."""
    violations = list(violations)
    heals = BalanceRequest.objects.filter(kind__in=REPAIR_KINDS).filter(
        Q(uid__in={v.uid for v in violations}, state__in=OPEN_STATES)
        | Q(violation__in=violations, state=RequestState.APPLIED)
    )
    open_by_uid, applied_by_violation = {}, {}
    for heal in heals:
        if heal.state in OPEN_STATES:
            open_by_uid[heal.uid] = heal
        else:
            applied_by_violation[heal.violation_id] = heal
    found = {}
    for violation in violations:
        blocking = open_by_uid.get(violation.uid) or applied_by_violation.get(violation.pk)
        if blocking is not None:
            found[violation.pk] = blocking
    return found


# -- which adjustment settles a payment ------------------------------------------


def settling_adjustments(identities: Iterable[str]) -> dict[str, BalanceRequest]:
    """{identity: the standing manual adjustment that settles it} for those of
    the given business identities that have one, in one query."""
    identities = {identity for identity in identities if identity}
    standing = BalanceRequest.objects.filter(kind=RequestKind.ADJUSTMENT, state__in=STANDING_STATES)
    # Most chunks of a statement meet no adjustment at all: one indexed look
    # (the unique index on standing settles) spares the query naming them all.
    if not identities or not standing.exclude(settles="").exists():
        return {}
    found = standing.filter(settles__in=identities).only("pk", "settles", "state", "amount", "uid")
    return {request.settles: request for request in found}


def settled_refusal(request: BalanceRequest) -> str:
    """Why another adjustment for what `request` settles is refused, for a person."""
    return (
        f"{request.settles} already has manual adjustment #{request.pk} of {signed(request.amount)} points "
        f"for wallet {request.uid} ({request.get_state_display().lower()}): one adjustment per payment, "
        "so it is not paid out twice"
    )


# -- who may decide a request ----------------------------------------------------


def why_undecidable(request: BalanceRequest, user: User, *, now: datetime | None = None) -> str | None:
    """Why `user` cannot approve or reject `request` now, for a person; None when
    they can. Read-only (an overdue proposal is said to be expired, not expired
    here): pages ask it to offer only what changes.approve and changes.reject would accept.
    The freeze is left to the caller: it stops approving, not rejecting."""
    now = now or timezone.now()
    if not may(user, "reconciliation.approve_balancerequest"):
        return "only finance approvers decide requests"
    if request.state != RequestState.PROPOSED:
        return f"this request is {request.get_state_display().lower()}: there is nothing left to decide"
    if request.expires_at <= now:
        return f"this request expired at {request.expires_at:%Y-%m-%d %H:%M} UTC, not decided in time"
    if request.proposed_by_id == user.pk:
        return "you proposed this request: someone else must decide on it"
    if request.approvals.filter(approver=user).exists():
        return "you have approved this request already: it needs a different approver"
    return None


def awaiting(user: User | AnonymousUser) -> QuerySet[BalanceRequest]:
    """Open proposals this user may decide: only for approvers, not their own,
    not approved by them yet, not past their expiry (why_undecidable's rules,
    as a query)."""
    if not may(user, "reconciliation.approve_balancerequest"):
        return BalanceRequest.objects.none()
    return BalanceRequest.objects.filter(state=RequestState.PROPOSED, expires_at__gt=timezone.now()).exclude(
        Q(proposed_by=user) | Q(approvals__approver=user)
    )
