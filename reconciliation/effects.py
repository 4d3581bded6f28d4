"""What a heal, correction or manual adjustment does to a wallet: the customer's
points and the ledger's sum, before and after. Pure arithmetic on the numbers a
request was proposed with (the pages show it; reconciliation.changes decides on
it; the gateway's apply_balance_change does it)."""

from __future__ import annotations

from dataclasses import dataclass

from reconciliation.models import BalanceRequest, HealStrategy, RequestKind, Violation


def heal_amount(strategy: str, delta: int) -> int:
    """The signed move of a heal of `delta` (wallet − ledger): rebalance moves the
    wallet to its ledger, post_adjustment moves the ledger to the wallet."""
    return -delta if strategy == HealStrategy.REBALANCE else delta


@dataclass(frozen=True)
class Effect:
    """A change's effect on a wallet: the customer's points and the ledger's sum, before and after."""

    points_before: int
    points_after: int
    ledger_before: int
    ledger_after: int


def effect(*, kind: str, strategy: str, amount: int, wallet_points: int, ledger_sum: int) -> Effect:
    """What applying a request of `amount` does to a wallet that holds these numbers
    (as the gateway's apply_balance_change does it, for each mode): a
    correction, like a post adjustment, moves the ledger and leaves the points."""
    moves_points = kind == RequestKind.ADJUSTMENT or strategy == HealStrategy.REBALANCE
    moves_ledger = kind in (RequestKind.ADJUSTMENT, RequestKind.CORRECTION) or (
        strategy == HealStrategy.POST_ADJUSTMENT
    )
    return Effect(
        points_before=wallet_points,
        points_after=wallet_points + amount if moves_points else wallet_points,
        ledger_before=ledger_sum,
        ledger_after=ledger_sum + amount if moves_ledger else ledger_sum,
    )


def heal_effect(violation: Violation, strategy: str) -> Effect:
    """The effect of healing a drift violation with `strategy`, on the numbers it was found with."""
    assert violation.delta is not None and violation.wallet_points is not None  # a drift's are integers
    return effect(
        kind=RequestKind.HEAL,
        strategy=strategy,
        amount=heal_amount(strategy, violation.delta),
        wallet_points=violation.wallet_points,
        ledger_sum=violation.ledger_sum,
    )


def request_effect(request: BalanceRequest) -> Effect:
    """The effect of a heal, correction or adjustment on the wallet as it was when proposed."""
    return effect(
        kind=request.kind,
        strategy=request.strategy,
        amount=request.amount,
        wallet_points=request.expected_points,
        ledger_sum=request.expected_ledger_sum,
    )
