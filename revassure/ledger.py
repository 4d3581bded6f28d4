"""The ledger's invariant, as one rule every part applies the same way.

    wallet.points == sum(ledger.amount)      as integers

Points are integers. Firestore hands back a float for a non-integer amount (and
a sum over one as a double), and Python counts a bool as an int: neither is a
number of points, so neither ever agrees with anything, even when `==` says so
(10.0 == 10, True == 1). Here in the core so that reconciliation, heals and the
Firestore gateway share it.
"""

from typing import Any, TypeGuard


def is_points(value: Any) -> TypeGuard[int]:
    """A valid number of points: an int, and not a bool."""
    return type(value) is int


def same_points(a: Any, b: Any) -> bool:
    """Strict integer equality: both are points, and equal."""
    return is_points(a) and is_points(b) and a == b


def balances_agree(points: Any, ledger_sum: Any) -> bool:
    """The wallet holds exactly what its ledger adds up to."""
    return same_points(points, ledger_sum)


def balances_unchanged(points: Any, ledger_sum: Any, *, seen_points: Any, seen_ledger_sum: Any) -> bool:
    """The wallet and its ledger are exactly what someone saw (a proposer, an
    approver): the same integers, so a float 10.0 is not the 10 they approved."""
    return same_points(points, seen_points) and same_points(ledger_sum, seen_ledger_sum)
