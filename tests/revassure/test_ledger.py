"""The one rule of the invariant: wallet.points == sum(ledger.amount), as integers."""

import pytest

from revassure.ledger import balances_agree, balances_unchanged, is_points

# CI's PostgreSQL pass skips it, having run it in the defaults pass: touches no database.
pytestmark = pytest.mark.same_on_every_database


@pytest.mark.parametrize(
    "points, ledger_sum",
    [(0, 0), (125, 125), (-40, -40), (2**63 + 5, 2**63 + 5)],
)
def test_a_wallet_agrees_with_a_ledger_of_the_same_integer(points, ledger_sum):
    assert balances_agree(points, ledger_sum)


@pytest.mark.parametrize(
    "points, ledger_sum",
    [
        (125, 124),  # drift
        (10, 10.0),  # a float amount in the ledger makes its sum a double
        (10.0, 10),  # a float in the wallet
        (10.0, 10.0),
        (True, 1),  # a bool is an int to Python, never to us
        (1, True),
        (None, 0),  # no integer points (missing, malformed)
        (0, None),
        ("10", 10),
    ],
)
def test_a_wallet_never_agrees_unless_both_sides_are_equal_integers(points, ledger_sum):
    assert not balances_agree(points, ledger_sum)


def test_points_are_ints_and_nothing_else():
    assert [is_points(v) for v in (7, -7, 0, 7.0, True, None, "7")] == [
        True,
        True,
        True,
        False,
        False,
        False,
        False,
    ]


def test_a_wallet_is_unchanged_only_when_both_sides_are_the_integers_seen():
    assert balances_unchanged(100, 90, seen_points=100, seen_ledger_sum=90)
    assert not balances_unchanged(100, 91, seen_points=100, seen_ledger_sum=90)
    assert not balances_unchanged(101, 90, seen_points=100, seen_ledger_sum=90)
    # A float equal to what the approver saw is not what the approver saw.
    assert not balances_unchanged(100.0, 90, seen_points=100, seen_ledger_sum=90)
    assert not balances_unchanged(100, 90.0, seen_points=100, seen_ledger_sum=90)
