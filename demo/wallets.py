"""Realistic demo wallets: purchases, redemptions and refunds, some drifted,
a few with malformed amounts. Deterministic for a given seed."""

import hashlib
import random
import string
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import transaction

from reconciliation import breaks, reports
from reconciliation.models import ReconciliationRun, RunStatus, RunTrigger, Violation, ViolationKind
from reconciliation.wallet_checks import classify
from revassure.firestore import FirestoreGateway
from revassure.ledger import is_points

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
            entry: dict[str, Any] = {
                "type": "redemption",
                "amount": amount,
                "rewardId": f"rwd_{rng.randint(1, 40)}",
            }
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


# -- a history of earlier runs, for the dashboard's 30-day chart ---------------

HISTORY_HOUR = 2  # the hour (UTC) the seeded daily runs are dated at


def drift_began(uid: str, days: int) -> int:
    """How many days ago a drifted demo wallet began to drift (0: today, so no
    earlier run saw it). Deterministic per uid, spread over `days`."""
    return int.from_bytes(hashlib.sha256(uid.encode()).digest()[:4], "big") % (days + 1)


def seed_history(
    wallets: list[tuple[str, Any, dict[str, dict[str, Any]]]],
    *,
    days: int,
    gateway: FirestoreGateway,
    now: datetime,
) -> list[ReconciliationRun]:
    """Completed full runs, one a day for the `days` days before `now`, built from
    the demo wallets just written: each drifted wallet shows its drift from the
    day drift_began() gives, so the chart climbs to today's figures. Each run is
    sealed in the chain (oldest first, before any real run), mirrored to
    Firestore and taken into the breaks like a real one, and says what it is:
    trigger `demo`, labelled "seeded demo history" wherever runs are shown.
    """
    if not days:
        return []
    if ReconciliationRun.objects.exists():
        raise ValueError("a history goes before every real run: this database has runs already")
    states = []
    for uid, points, ledger in wallets:
        clean = sum(fields["amount"] for fields in ledger.values() if is_points(fields.get("amount")))
        began = drift_began(uid, days) if is_points(points) and points != clean else None
        states.append((uid, points, clean, began, sorted(ledger.items())))
    sealed = []
    for ago in range(days, 0, -1):
        started = (now - timedelta(days=ago)).replace(hour=HISTORY_HOUR, minute=0, second=0, microsecond=0)
        found = []
        for uid, points, clean, began, entries in states:
            seen = points if began is None or began >= ago else clean
            violation = classify(uid, seen, entries, exists=True)
            found.append((seen, violation))
        violations = [v for _, v in found if v is not None]
        with transaction.atomic():
            run = ReconciliationRun.objects.create(
                status=RunStatus.RUNNING,
                trigger=RunTrigger.DEMO,
                started_at=started,
                chunks_total=0,
                wallets_checked=len(states),
                violations_count=len(violations),
                drift_count=sum(v["kind"] == ViolationKind.DRIFT for v in violations),
                malformed_count=sum(v["kind"] == ViolationKind.MALFORMED for v in violations),
                total_abs_drift=sum(abs(v["delta"]) for v in violations if v["delta"] is not None),
                # As a run adds them up: a clean wallet's points on both sides,
                # a violation's own figures (integer amounts only).
                total_wallet_points=sum((v["wallet_points"] or 0) if v else seen for seen, v in found),
                total_ledger_sum=sum(v["ledger_sum"] if v else seen for seen, v in found),
            )
            Violation.objects.bulk_create(Violation(run=run, **v) for v in violations)
            run = reports.seal_seeded(run.pk, started + timedelta(seconds=len(states) // 500 + 2))
        reports.mirror_run(run, gateway=gateway)
        breaks.track_run(run)
        sealed.append(run)
    return sealed
