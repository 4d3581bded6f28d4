"""Corrections: the end of a malformed ledger entry's path, append-only.

An entry whose amount Firestore's sum skips (a string "120", a null, a
missing amount, a bool) makes its wallet's violation malformed, and a heal
would only hide it. A correction is a new ledger entry that supersedes it:
proposed here by one person for one entry, with the amount it should have
been and a reason, then approved by another and applied by a worker through
reconciliation.changes, exactly as a heal (maker-checker, stale when the
wallet or its ledger moved, once). The worker appends
`revassure-correction-<request id>` with `type: "correction"`,
`supersedes: <entry id>`, the amount and who proposed and approved it,
leaving the wallet's points and the malformed entry as they are
(BalanceChange mode post_adjustment). From then on every reading of the
ledger counts the two as the correction says (revassure.ledger
.superseded_entries): the malformed entry counts for nothing and is no
longer malformed; the correction counts its amount, which Firestore's sum
adds by itself.

An amount the sum counts already (a double like 120.5) cannot be corrected
this way: a correcting entry would count next to it. Such a break is
accepted with a reason instead. One standing correction per entry: a second
one, while the first is proposed, approved or applied, is refused naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction

from reconciliation import changes
from reconciliation.models import (
    OPEN_STATES,
    REPAIR_KINDS,
    STANDING_STATES,
    BalanceRequest,
    ReasonCode,
    RequestKind,
    RunStatus,
    Violation,
    ViolationKind,
)
from revassure import freeze, policy
from revassure.firestore import MISSING, FirestoreGateway
from revassure.formatting import points, signed
from revassure.ledger import is_points, summed
from revassure.refusals import require

PROPOSE = "reconciliation.propose_balancerequest"
MAX_ENTRY_ID = 500  # BalanceRequest.supersedes
# How wallet_checks.classify names the problem of a double amount in a violation's details.
NOT_AN_INTEGER = "not an integer"


@dataclass(frozen=True)
class Malformed:
    """A malformed entry of a violation, as its details list it: the entry id,
    its amount described, and whether a correction can supersede it."""

    entry_id: str
    amount: str
    problem: str

    @property
    def correctable(self) -> bool:
        return self.problem != NOT_AN_INTEGER


def malformed_entries(violation: Violation) -> list[Malformed]:
    """The malformed entries the violation's details list (the first 50 of them)."""
    return [
        Malformed(str(m.get("entry", "")), str(m.get("amount", "")), str(m.get("problem", "")))
        for m in violation.details.get("malformed_entries", [])
    ]


def standing_corrections(uid: str) -> dict[str, BalanceRequest]:
    """{entry id: its correction} for the wallet's entries with a standing one
    (proposed, approved or applied)."""
    found = BalanceRequest.objects.filter(
        kind=RequestKind.CORRECTION, uid=uid, state__in=STANDING_STATES
    ).exclude(supersedes="")
    return {request.supersedes: request for request in found}


def correction_refusal(violation: Violation | None) -> str:
    """Why no correction can be proposed for this violation now, for a person; ""
    when one can (for at least one of its entries). Read-only, the freeze left
    to the caller; propose_correction still refuses on its own."""
    if violation is None:
        return "no run has seen it yet"
    if violation.kind != ViolationKind.MALFORMED:
        return "nothing is malformed: a correction supersedes a malformed ledger entry; propose a heal"
    if violation.run.status != RunStatus.COMPLETED:
        return f"run {violation.run_id} is not completed"
    if violation.wallet_points is None:
        return "the wallet's own points are malformed: a correction fixes a ledger entry; fix the data first"
    listed = malformed_entries(violation)
    if not listed:
        return "its malformed entries are not listed: run reconciliation again"
    repair = _open_repair(violation.uid)
    if repair is not None:
        return f"its wallet already has {repair.title.lower()} ({repair.get_state_display().lower()})"
    standing = standing_corrections(violation.uid)
    open_ = [m for m in listed if m.correctable and m.entry_id not in standing]
    if open_:
        return ""
    if any(m.correctable for m in listed):
        return "; ".join(
            _corrected_already(m.entry_id, standing[m.entry_id]) for m in listed if m.entry_id in standing
        )
    return f"{_double(listed[0].entry_id, listed[0].amount)}; accept the difference with a reason instead"


def correctable_entries(violation: Violation) -> list[Malformed]:
    """The violation's malformed entries a correction can supersede now."""
    standing = standing_corrections(violation.uid)
    return [m for m in malformed_entries(violation) if m.correctable and m.entry_id not in standing]


def describe(amount: Any) -> str:
    """A raw amount as a person reads it: 'a string "120"', "null", "missing"."""
    if amount is MISSING:
        return "missing"
    if amount is None:
        return "null"
    if isinstance(amount, str):
        return f'a string "{amount[:60]}"'
    if isinstance(amount, bool):
        return f"a boolean ({str(amount).lower()})"
    if isinstance(amount, float):
        return f"{amount!r}, not whole points"
    return f"a {type(amount).__name__} ({amount!r:.60})"


def live_amounts(uid: str, entry_ids: list[str], gateway: FirestoreGateway) -> dict[str, Any]:
    """{entry id: its raw amount now (MISSING when the field is absent)}; entries
    that no longer exist are left out. One batched read."""
    found = gateway.ledger_entry_amounts([(uid, entry_id) for entry_id in entry_ids])
    return {entry_id: amount for (_, entry_id), amount in found.items()}


def propose_correction(
    violation: Violation,
    *,
    actor: User,
    entry_id: str,
    amount: int,
    reason: str,
    gateway: FirestoreGateway,
) -> BalanceRequest:
    """Propose a correcting entry of `amount` points that supersedes the malformed
    entry `entry_id` of the violation's wallet: maker-checker as a heal, with
    the wallet and its ledger as the violation found them (refused when they
    moved since: reconcile again)."""
    require(actor, PROPOSE, "propose corrections")
    freeze.require_unfrozen()
    changes.require_reason(reason)
    entry_id = (entry_id or "").strip()
    if not entry_id or "/" in entry_id or len(entry_id) > MAX_ENTRY_ID:
        raise changes.RequestRefused("name the malformed ledger entry to correct (its entry id)")
    if not is_points(amount):
        raise changes.RequestRefused("the corrected amount must be a whole number of points")
    if abs(amount) > policy.MAX_POINTS:
        raise changes.RequestRefused(f"the amount {amount} is beyond a 64-bit ledger amount")
    _require_uncorrected(violation.uid, entry_id)
    refusal = correction_refusal(violation)
    if refusal:
        raise changes.RequestRefused(refusal)
    uid = violation.uid
    found = live_amounts(uid, [entry_id], gateway)
    if entry_id not in found:
        raise changes.RequestRefused(f"there is no entry {entry_id} in the ledger of {uid}")
    raw = found[entry_id]
    if is_points(raw):
        raise changes.RequestRefused(
            f"entry {entry_id} holds {signed(raw)} points, whole: nothing to correct"
        )
    if summed(raw):
        raise changes.RequestRefused(
            f"{_double(entry_id, describe(raw))}; accept the difference with a reason instead"
        )
    seen_points = violation.wallet_points
    assert seen_points is not None  # correction_refusal said so otherwise
    live = gateway.read_wallets_and_ledgers([uid], concurrency=1)[uid]
    if not is_points(live.ledger.total):
        raise changes.RequestRefused(
            f"the ledger of {uid} sums to {points(live.ledger.total)}, not whole points: another entry "
            "holds a fraction that Firestore's sum counts, and a correction cannot take it out; accept "
            "the difference with a reason instead"
        )
    if not changes.matches(live, seen_points, violation.ledger_sum):
        raise changes.RequestRefused(
            f"{uid} changed since run {violation.run_id} (now {points(live.points)} points, ledger "
            f"{points(live.ledger.total)}): run reconciliation again"
        )
    try:
        with transaction.atomic():
            repair = _open_repair(uid)
            if repair is not None:
                raise changes.RequestRefused(
                    f"already an open {repair.get_kind_display().lower()} request for {uid} (#{repair.pk})"
                )
            return changes.create_request(
                kind=RequestKind.CORRECTION,
                uid=uid,
                violation=violation,
                amount=amount,
                reason_code=ReasonCode.CORRECTION,
                reason=reason.strip(),
                supersedes=entry_id,
                expected_points=seen_points,
                expected_ledger_sum=violation.ledger_sum,
                actor=actor,
            )
    except IntegrityError:
        _require_uncorrected(uid, entry_id)  # proposed by someone else meanwhile: say which
        raise changes.RequestRefused(
            f"another request for {uid} was proposed at the same moment: look at its requests"
        ) from None


def _open_repair(uid: str) -> BalanceRequest | None:
    return BalanceRequest.objects.filter(uid=uid, kind__in=REPAIR_KINDS, state__in=OPEN_STATES).first()


def _require_uncorrected(uid: str, entry_id: str) -> None:
    standing = standing_corrections(uid).get(entry_id)
    if standing is not None:
        raise changes.RequestRefused(_corrected_already(entry_id, standing))


def _corrected_already(entry_id: str, request: BalanceRequest) -> str:
    return (
        f"entry {entry_id} already has {request.title.lower()} ({request.get_state_display().lower()}, "
        f"{signed(request.amount)} points): one correction per entry"
    )


def _double(entry_id: str, amount: str) -> str:
    return (
        f"entry {entry_id} holds {amount}: Firestore's sum counts it already, so a correcting entry "
        "would count beside it"
    )
