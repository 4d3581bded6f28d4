"""Balance changes of one wallet made at the same moment by several workers.

Each test starts its threads together at a barrier and goes through the
product's own paths: backfill.services.apply_delivery for provider events,
the gateway's apply_balance_change for approved heals and adjustments. They
hold because Firestore serialises transactions that touch the same wallet;
each fails on the npm emulator without our launcher's promises
(FIRESTORE_EMULATOR_BARE=1), but for the one that guards retries under
contention, which the bare emulator never causes. Each race runs on three
wallets at once, so that luck in the timing of threads cannot serialise them
all and let a broken emulator pass.
"""

import json
import threading

import pytest
from django.db import connections

from backfill.intake import store_delivery
from backfill.models import EventStatus, ProviderEventDelivery
from backfill.services import apply_delivery
from revassure.firestore import AUDIT_LOG, LEDGER, WALLETS, BalanceChange
from tests.helpers import firestore_client, put_wallets

# CI's PostgreSQL pass skips it, having run it in the defaults pass: touches Firestore only, never a database.
pytestmark = pytest.mark.same_on_every_database

RACED = ("u1", "u2", "u3")

# Threads have database connections of their own: they see only committed rows.
deliveries_db = pytest.mark.django_db(transaction=True)


def stored(event_id, kind="payment.succeeded", *, user="u1", payment="pay_1", points=100, **extra):
    data = {"payment_id": payment, "user_id": user, "points": points, **extra}
    raw = json.dumps({"id": event_id, "type": kind, "created": "2026-11-20T10:00:00Z", "data": data}).encode()
    return store_delivery(raw, source="webhook")


def all_at_once(work, items, *, database=False):
    """work(item) for every item, each in its own thread, started together at a barrier
    (with its database connection open before, when it uses one, as a worker's is)."""
    barrier = threading.Barrier(len(items))
    errors = []

    def one(item):
        try:
            if database:
                connections["default"].ensure_connection()
            barrier.wait()
            work(item)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            if database:
                connections.close_all()

    threads = [threading.Thread(target=one, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    # A hang, not a slow worker: past the product's own contention deadline
    # (FIRESTORE_RETRY_DEADLINE, 60 s) plus its last attempt and pause.
    for thread in threads:
        thread.join(180)
    assert not [t for t in threads if t.is_alive()], "a worker hung"
    assert errors == []


def wallet_and_ledger(gateway, uid):
    wallet = firestore_client(gateway.project).collection(WALLETS).document(uid)
    entries = {snap.id: snap.to_dict() for snap in wallet.collection(LEDGER).stream()}
    return wallet.get().to_dict()["points"], entries


# -- provider events ---------------------------------------------------------------


def outcomes(deliveries):
    return sorted(ProviderEventDelivery.objects.get(pk=d.pk).status for d in deliveries)


@deliveries_db
def test_concurrent_refunds_of_one_payment_apply_only_what_it_allows(gateway):
    put_wallets(gateway, {uid: (0, []) for uid in RACED})
    refunds = {}
    for uid in RACED:
        apply_delivery(stored(f"evt_pay_{uid}", user=uid, payment=f"pay_{uid}").pk, gateway=gateway)
        refunds[uid] = [
            stored(
                f"evt_ref_{uid}_{n}",
                "payment.refunded",
                user=uid,
                payment=f"pay_{uid}",
                points=100,
                refund_id=f"re_{uid}_{n}",
            )
            for n in range(8)
        ]

    race = [delivery for deliveries in refunds.values() for delivery in deliveries]
    all_at_once(lambda delivery: apply_delivery(delivery.pk, gateway=gateway), race, database=True)

    for uid in RACED:
        assert outcomes(refunds[uid]) == [EventStatus.APPLIED] + [EventStatus.QUARANTINED] * 7
        points, entries = wallet_and_ledger(gateway, uid)
        assert points == 0 == sum(entry["amount"] for entry in entries.values())
        assert len(entries) == 2  # the payment and one refund


@deliveries_db
def test_concurrent_deliveries_of_one_event_apply_it_once_and_the_rest_are_duplicates(gateway):
    put_wallets(gateway, {uid: (0, []) for uid in RACED})
    # The provider sent each event eight times.
    deliveries = {
        uid: [stored(f"evt_pay_{uid}", user=uid, payment=f"pay_{uid}") for _ in range(8)] for uid in RACED
    }

    race = [delivery for copies in deliveries.values() for delivery in copies]
    all_at_once(lambda delivery: apply_delivery(delivery.pk, gateway=gateway), race, database=True)

    for uid in RACED:
        assert outcomes(deliveries[uid]) == [EventStatus.APPLIED] + [EventStatus.DUPLICATE] * 7
        points, entries = wallet_and_ledger(gateway, uid)
        assert points == 100 == sum(entry["amount"] for entry in entries.values())


@deliveries_db
def test_concurrent_payments_to_one_wallet_all_apply(gateway):
    """Contention must not fail a delivery: one conflicting transaction commits at a
    time, so the last of eight may need eight attempts. (The bare emulator aborts
    nothing, so this one passes there: it guards the gateway's retries, not the
    emulator.)"""
    put_wallets(gateway, {uid: (0, []) for uid in RACED})
    payments = {
        uid: [stored(f"evt_{uid}_{n}", user=uid, payment=f"pay_{uid}_{n}", points=10) for n in range(8)]
        for uid in RACED
    }

    race = [delivery for per_wallet in payments.values() for delivery in per_wallet]
    all_at_once(lambda delivery: apply_delivery(delivery.pk, gateway=gateway), race, database=True)

    for uid in RACED:
        points, entries = wallet_and_ledger(gateway, uid)
        assert points == sum(entry["amount"] for entry in entries.values())
        assert outcomes(payments[uid]) == [EventStatus.APPLIED] * 8


def test_wallet_and_ledger_read_together_never_show_half_a_payment(gateway):
    """What reconciliation's recheck relies on before it reports drift: the wallet
    and its ledger sum read in one read-only transaction, while payments that move
    both in one commit land in between."""
    put_wallets(gateway, {uid: (0, []) for uid in RACED})
    stop = threading.Event()

    def pay():
        n = 0
        while not stop.is_set():
            for uid in RACED:
                gateway.append_entry(uid, f"pay-{n}", {"amount": 1, "type": "purchase"})
            n += 1

    payer = threading.Thread(target=pay)
    payer.start()
    torn = []
    try:
        for _ in range(40):
            states = gateway.read_wallets_and_ledgers(list(RACED), concurrency=len(RACED))
            torn += [
                (uid, s.points, s.ledger.total) for uid, s in states.items() if s.points != s.ledger.total
            ]
    finally:
        stop.set()
        payer.join(30)
    assert torn == []


# -- heals and adjustments -----------------------------------------------------------
# The Firestore side of executing approved requests (what execution.execute runs
# for each): several workers execute requests of the same wallet at once, each
# approved against the same wallet state. One applies; the others must see that
# the wallet moved and go stale.


def change(uid, mode, amount, n, *, points, ledger_sum):
    return BalanceChange(
        uid=uid,
        mode=mode,
        amount=amount,
        expected_points=points,
        expected_ledger_sum=ledger_sum,
        marker_id=f"revassure-{mode}-{uid}-{n}",
        record={"type": "reconciliation" if mode != "adjustment" else "adjustment", "requestId": n},
    )


def apply_all_at_once(gateway, changes):
    results = {}
    all_at_once(lambda c: results.__setitem__(c.marker_id, gateway.apply_balance_change(c).status), changes)
    return results


def test_concurrent_adjustments_of_one_wallet_apply_one_and_the_rest_go_stale(gateway):
    put_wallets(gateway, {uid: (100, [100]) for uid in RACED})
    adjustments = {
        uid: [change(uid, "adjustment", 10, n, points=100, ledger_sum=100) for n in range(8)] for uid in RACED
    }

    results = apply_all_at_once(gateway, [c for per_wallet in adjustments.values() for c in per_wallet])

    for uid in RACED:
        statuses = {c.marker_id: results[c.marker_id] for c in adjustments[uid]}
        assert sorted(statuses.values()) == ["applied"] + ["stale"] * 7
        points, entries = wallet_and_ledger(gateway, uid)
        assert points == 110 == sum(entry["amount"] for entry in entries.values())
        [applied] = [marker for marker, status in statuses.items() if status == "applied"]
        assert sorted(entries) == sorted(["e000", applied])  # counted once


def test_heals_racing_adjustments_of_their_wallet_leave_exactly_one_applied(gateway):
    put_wallets(gateway, {uid: (90, [100]) for uid in RACED})  # each 10 points short
    expected = {"points": 90, "ledger_sum": 100}
    changes = {
        uid: [
            change(uid, "rebalance", 10, 0, **expected),
            change(uid, "rebalance", 10, 1, **expected),
            change(uid, "post_adjustment", -10, 2, **expected),
            change(uid, "post_adjustment", -10, 3, **expected),
            *(change(uid, "adjustment", 5, n, **expected) for n in range(4, 8)),
        ]
        for uid in RACED
    }

    results = apply_all_at_once(gateway, [c for per_wallet in changes.values() for c in per_wallet])

    audit = {snap.id for snap in firestore_client(gateway.project).collection(AUDIT_LOG).stream()}
    for uid in RACED:
        [applied] = [c for c in changes[uid] if results[c.marker_id] == "applied"]
        assert sorted(results[c.marker_id] for c in changes[uid]) == ["applied"] + ["stale"] * 7
        points, entries = wallet_and_ledger(gateway, uid)
        ledger_sum = sum(entry["amount"] for entry in entries.values())
        # Exactly the one applied change, once: the wallet and ledger it leaves, its own marker.
        assert (points, ledger_sum) == {
            "rebalance": (100, 100),
            "post_adjustment": (90, 90),
            "adjustment": (95, 105),
        }[applied.mode]
        markers = {entry for entry in entries if entry != "e000"} | {m for m in audit if f"-{uid}-" in m}
        assert markers == {applied.marker_id}
