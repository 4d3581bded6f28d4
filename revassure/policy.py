"""Balance policies every way of moving points obeys: reversals from the
provider (backfill) and manual adjustments alike.

BACKFILL_ALLOW_NEGATIVE_BALANCE is read here and only here: off (the default),
no reversal and no manual adjustment may take a wallet below zero; on, both
may. Heals are outside it: a rebalance sets the wallet to what its ledger, the
source of truth, already says.
"""

from django.conf import settings

from revassure import formatting

# A ledger amount and a balance are 64-bit signed integers in Firestore.
MAX_POINTS = 2**63 - 1


def negative_balance_allowed() -> bool:
    """Whether a reversal or a manual adjustment may take a wallet below zero."""
    return settings.BACKFILL_ALLOW_NEGATIVE_BALANCE


def balance_refusal(points: int, amount: int) -> str:
    """Why moving a wallet of `points` by `amount` is refused, or "" when it is allowed."""
    after = points + amount
    if not -MAX_POINTS <= after <= MAX_POINTS:
        return (
            f"would take the wallet from {formatting.points(points)} to {formatting.points(after)} points, "
            "beyond a 64-bit balance"
        )
    if after < 0 and amount < 0 and not negative_balance_allowed():
        return (
            f"would take the wallet from {formatting.points(points)} to {formatting.points(after)} points; "
            "negative balances are not allowed "
            "(BACKFILL_ALLOW_NEGATIVE_BALANCE is off)"
        )
    return ""
