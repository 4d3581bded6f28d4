"""Realistic demo wallets: purchases, redemptions and refunds, some drifted,
a few with malformed amounts. Deterministic for a given seed."""

import random
import string
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

_UID_ALPHABET = string.ascii_letters + string.digits
_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def demo_wallets(
    count: int,
    *,
    entries_per_wallet: int = 20,
    drift_share: float = 0.05,
    malformed: int = 3,
    seed: int = 42,
) -> Iterator[tuple[str, int, dict[str, dict[str, Any]]]]:
    """Yield (uid, points, ledger) for `count` wallets.

    About `drift_share` of the wallets get cached points that disagree with their
    ledger; `malformed` of them (spread over the set) get one entry whose amount
    is a string, a float or missing.
    """
    rng = random.Random(seed)
    drifted = set(rng.sample(range(count), round(count * drift_share)))
    spoiled = set(rng.sample(range(count), min(malformed, count)))
    bad_amounts = ["120", 12.5, None]
    for index in range(count):
        uid = "".join(rng.choice(_UID_ALPHABET) for _ in range(28))
        ledger, balance = _ledger(rng, entries_per_wallet)
        if index in spoiled:
            entry_id = rng.choice(sorted(ledger))
            bad = bad_amounts[index % len(bad_amounts)]
            if bad is None:
                del ledger[entry_id]["amount"]
            else:
                ledger[entry_id]["amount"] = bad
        points = balance
        if index in drifted:
            points += rng.choice([-1, 1]) * rng.randint(1, 500)
        yield uid, points, ledger


def _ledger(rng: random.Random, size: int) -> tuple[dict[str, dict[str, Any]], int]:
    ledger: dict[str, dict[str, Any]] = {}
    balance = 0
    purchases: list[tuple[str, int]] = []
    when = _EPOCH + timedelta(minutes=rng.randint(0, 60 * 24 * 200))
    for n in range(size):
        when += timedelta(minutes=rng.randint(5, 60 * 24 * 3))
        roll = rng.random()
        if roll < 0.15 and balance >= 50:
            amount = -rng.randint(50, min(balance, 2000))
            entry = {"type": "redemption", "amount": amount, "rewardId": f"rwd_{rng.randint(1, 40)}"}
        elif roll < 0.22 and purchases:
            original, points = purchases.pop(rng.randrange(len(purchases)))
            amount = -min(points, balance)
            if amount == 0:
                continue
            entry = {
                "type": "reversal",
                "amount": amount,
                "reverses": original,
                "refundId": f"re_{rng.getrandbits(48):012x}",
            }
        else:
            amount = rng.randint(10, 600)
            payment = f"pi_{rng.getrandbits(64):016x}"
            entry = {"type": "purchase", "amount": amount, "paymentId": payment}
            purchases.append((f"purchase-{payment}", amount))
        entry_id = entry.get("paymentId") and f"purchase-{entry['paymentId']}" or f"e{n:04d}-{entry['type']}"
        entry["createdAt"] = when
        ledger[entry_id] = entry
        balance += amount
    return ledger, balance
