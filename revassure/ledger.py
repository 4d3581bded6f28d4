"""The ledger's invariant, as one rule every part applies the same way.

    wallet.points == sum(ledger.amount)      as integers

Points are integers. Firestore hands back a float for a non-integer amount (and
a sum over one as a double), and Python counts a bool as an int: neither is a
number of points, so neither ever agrees with anything, even when `==` says so
(10.0 == 10, True == 1). Here in the core so that reconciliation, heals and the
Firestore gateway share it.
"""

from collections.abc import Iterable
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


def reading(amount: Any) -> int | None:
    """The whole points a person reads in a malformed amount ("120", " -5 "), or None."""
    if isinstance(amount, str):
        try:
            return int(amount.strip())
        except ValueError:
            return None
    return None


def summed(amount: Any) -> bool:
    """Whether Firestore's sum() aggregation adds this amount: an integer or a
    double. It skips the rest (a string "120", a null, a missing amount, a
    bool, a map), which is why those and only those can be corrected by
    another entry: a double like 120.5 is in the sum already."""
    return type(amount) in (int, float)


def superseded_entries(entries: Iterable[tuple[str, dict[str, Any]]]) -> dict[str, str]:
    """{entry id: the id of the entry that corrects it} in one wallet's ledger.

    A correction is an entry of whole points whose `supersedes` names another
    entry of the same ledger, one whose amount the sum skips. The ledger stays
    append-only: the superseded entry is still there, but counts for nothing
    and is no longer malformed; the correction counts its amount, in
    Firestore's sum as in ours. A correction naming an entry the sum counts
    changes nothing (both would count)."""
    entries = [(entry_id, fields or {}) for entry_id, fields in entries]
    skipped = {entry_id for entry_id, fields in entries if not summed(fields.get("amount"))}
    found: dict[str, str] = {}
    for entry_id, fields in entries:
        target = fields.get("supersedes")
        if isinstance(target, str) and target in skipped and is_points(fields.get("amount")):
            found.setdefault(target, entry_id)
    return found
