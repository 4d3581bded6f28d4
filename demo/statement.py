"""A demo PayNow statement for the seeded wallets: it settles the demo's
purchases, and carries a handful of realistic breaks of each kind.

Some breaks need more than the seeded ledgers: payments that came through the
webhook (stored deliveries, applied or not) and refunds applied as reversals.
Those are stored and applied here through the product's own intake
(backfill.intake and backfill.services), as the provider's webhooks would have arrived, so the
ledger, the identity markers and the stored deliveries agree as in production.
Deterministic for a given seed (times aside: the statement covers the last day).
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.utils import timezone

from backfill import intake, services
from backfill.models import EventSource, EventStatus, ProviderEventDelivery
from revassure.firestore import FirestoreGateway
from revassure.ledger import is_points
from settlement.statement import COLUMNS

BREAKS_EACH = 3
SETTLED_PURCHASES = 400  # the demo's purchases the statement settles (a day's worth)
UNREACHABLE = "ServiceUnavailable: 503 failed to connect to Firestore (demo)"


def _event(
    event_id: str, kind: str, *, user: str, payment: str, points: int, created: datetime, **extra
) -> bytes:
    data = {"payment_id": payment, "user_id": user, "points": points, **extra}
    body = {"id": event_id, "type": kind, "created": created.isoformat(), "data": data}
    return json.dumps(body).encode()


def _deliver(raw: bytes, *, gateway: FirestoreGateway, apply: bool):
    delivery = intake.store_delivery(raw, source=EventSource.WEBHOOK)
    if apply:
        return services.apply_delivery(delivery.pk, gateway=gateway)
    # Stored, then its apply failed (Firestore was out of reach): left for a
    # person's replay. Left `received`, the webhook drain would apply it within
    # a minute of the demo starting, and the break would heal itself.
    ProviderEventDelivery.objects.filter(pk=delivery.pk).update(
        status=EventStatus.FAILED, attempts=1, reason=UNREACHABLE
    )
    return delivery


def write_demo_statement(
    wallets: Iterable[tuple[str, Any, dict[str, dict[str, Any]]]],
    path: Path,
    *,
    gateway: FirestoreGateway,
    now: datetime,
    seed: int = 42,
) -> dict[str, int]:
    """Write the statement to `path` (and the deliveries its breaks need); the
    number of rows written for each kind of break (matched rows under "matched")."""
    rng = random.Random(seed)
    wallets = list(wallets)
    purchases = [
        (uid, fields["paymentId"], fields["amount"])
        for uid, points, ledger in wallets
        if is_points(points)
        for fields in ledger.values()
        if fields.get("type") == "purchase" and is_points(fields.get("amount")) and fields["amount"] > 0
    ]
    rng.shuffle(purchases)
    uids = [uid for uid, _, _ in wallets]
    start = now - timedelta(days=1)
    rows: list[list] = []
    made: dict[str, int] = {}

    def settled(n: int) -> str:
        return start.isoformat()  # spread over the day once every row is written

    def row(kind, payment, user, points, *, reference="", status="settled", when=None, amount=None):
        amount = f"{points / 10:.2f}" if amount is None else amount
        rows.append(
            [kind, payment, reference, user, points, amount, "EUR", status, when or settled(len(rows))]
        )

    take = iter(purchases)
    for _ in range(min(SETTLED_PURCHASES, len(purchases) - 4 * BREAKS_EACH)):
        uid, payment, points = next(take)
        row("payment", payment, uid, points)
    made["matched"] = len(rows)
    for _ in range(BREAKS_EACH):  # points that differ from what was credited
        uid, payment, points = next(take)
        row("payment", payment, uid, points + rng.choice([-25, 25, 50]))
    made["points_mismatch"] = BREAKS_EACH
    for _ in range(BREAKS_EACH):  # credited, but the provider never received the money
        uid, payment, points = next(take)
        row("payment", payment, uid, points, status=rng.choice(["pending", "failed"]), when="")
    made["not_settled"] = BREAKS_EACH
    for _ in range(BREAKS_EACH):  # refunded by the provider, points still in the wallet
        uid, payment, points = next(take)
        row("refund", payment, uid, min(points, 50), reference=f"re_demo_{rng.getrandbits(40):010x}")
    made["unreversed"] = BREAKS_EACH
    rows.extend([list(r) for r in rows[:BREAKS_EACH]])  # listed twice
    made["duplicate_in_statement"] = BREAKS_EACH
    # Rows the provider's export got wrong: reported with their line, never stopping the rest.
    rows.append(["payment", "pi_demo_bad_0", "", uids[0], "１２０", "12.00", "EUR", "settled", settled(0)])
    rows.append(["payment", "pi_demo_bad_1", "", uids[1], "120", "12,00", "EUR", "settled", settled(0)])
    rows.append(["payment", "pi_demo_bad_2", "", "", "120", "12.00", "EUR", "settled", settled(0)])
    made["malformed"] = 3

    for n in range(BREAKS_EACH):
        uid, other = rng.sample(uids, 2)
        # Settled, its webhook stored but its apply failed: replay can credit it.
        payment, points = f"pi_demo_stored_{n}", 100 + 10 * n
        _deliver(
            _event(
                f"evt_demo_stored_{n}",
                "payment.succeeded",
                user=uid,
                payment=payment,
                points=points,
                created=start,
            ),
            gateway=gateway,
            apply=False,
        )
        row("payment", payment, uid, points)
        # Settled, and nothing of it ever reached revassure.
        row("payment", f"pi_demo_lost_{n}", other, 120 + 5 * n)
        # Credited through the webhook to one wallet, settled for another.
        payment = f"pi_demo_wrong_{n}"
        _deliver(
            _event(
                f"evt_demo_wrong_{n}",
                "payment.succeeded",
                user=other,
                payment=payment,
                points=80,
                created=start,
            ),
            gateway=gateway,
            apply=True,
        )
        row("payment", payment, uid, 80)
        # Credited through the webhook, then refunded and reversed: all matched.
        payment = f"pi_demo_refunded_{n}"
        _deliver(
            _event(
                f"evt_demo_paid_{n}",
                "payment.succeeded",
                user=uid,
                payment=payment,
                points=200,
                created=start,
            ),
            gateway=gateway,
            apply=True,
        )
        refund = f"re_demo_done_{n}"
        _deliver(
            _event(
                f"evt_demo_refund_{n}",
                "payment.refunded",
                user=uid,
                payment=payment,
                points=60,
                created=start,
                refund_id=refund,
            ),
            gateway=gateway,
            apply=True,
        )
        row("payment", payment, uid, 200)
        row("refund", payment, uid, 60, reference=refund)
        # Credited through the webhook, missing from the statement.
        _deliver(
            _event(
                f"evt_demo_unsettled_{n}",
                "payment.succeeded",
                user=other,
                payment=f"pi_demo_unsettled_{n}",
                points=150,
                created=start,
            ),
            gateway=gateway,
            apply=True,
        )
    made["missing_in_ledger"] = 2 * BREAKS_EACH
    made["user_mismatch"] = BREAKS_EACH
    made["matched"] += 2 * BREAKS_EACH
    made["missing_at_provider"] = BREAKS_EACH
    # Settlement times spread over the day, the last one after the deliveries
    # above were applied (so the statement's period holds them).
    end = timezone.now()
    for n, cells in enumerate(rows):
        if cells[8]:
            cells[8] = (start + (end - start) * (n / max(len(rows) - 1, 1))).isoformat()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    return made
