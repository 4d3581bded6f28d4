"""Reading and judging wallets, for a run's chunks (reconciliation/services.py) and for re-derivations
(reconciliation/rederive.py).

    wallet_chunks()  stream the wallets (as of T0, or live) in chunks of [uid, encoded points];
    check_wallets()  compare each with its ledger's aggregated sum, re-check the candidates live
                     in a transaction and classify those whose drift holds (ChunkFindings);
    classify()       tell malformed entries from plain drift in a confirmed violation's ledger.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings

from reconciliation import instant
from reconciliation.models import ViolationKind
from revassure.firestore import MISSING, FirestoreGateway, LedgerTotals
from revassure.ledger import balances_agree, is_points, superseded_entries

MAX_LISTED_MALFORMED = 50
# Candidates are few; confirming them (a transaction and a ledger read each)
# concurrently keeps a run with many drifted wallets from stalling.
RECHECK_CONCURRENCY = 16


def wallet_chunks(
    scope_uids: list[str],
    gateway: FirestoreGateway,
    *,
    read_time: datetime | None,
    ramp: bool = False,
    after: str | None = None,
) -> Iterator[list[list[Any]]]:
    """Yield lists of [uid, encoded points], at most RECONCILE_CHUNK_SIZE long: the
    wallets named in `scope_uids` (every wallet when empty), as of `read_time`
    (live when None), in uid order; only those after the uid `after` when given
    (a listing taken over goes on from its last chunk).

    The wallet stream is read by a background thread into a small bounded queue,
    so reading wallets overlaps with checking the chunk before; memory stays
    bounded by a few chunks whatever the number of wallets.
    """
    size = settings.RECONCILE_CHUNK_SIZE
    if scope_uids:
        if after is not None:
            scope_uids = [uid for uid in scope_uids if uid > after]
        for start in range(0, len(scope_uids), size):
            uids = scope_uids[start : start + size]
            found = gateway.get_wallet_points(uids, read_time=read_time)
            yield [[uid, _encode_points(*found[uid])] for uid in uids]
        return

    chunks: queue.Queue = queue.Queue(maxsize=2)
    done, stop = object(), threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                chunks.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            # Inline (`ramp`), the first chunks are small, so checking starts once
            # a few wallets are listed rather than a whole chunk's worth: 1/8,
            # 1/4, 1/2, then full. Workers get whole chunks from the start.
            batch, target = [], max(1, size // 8) if ramp else size
            for uid, points in gateway.stream_wallets(read_time=read_time):
                if after is not None and uid <= after:
                    continue  # cut into a chunk before the listing was taken over
                batch.append([uid, _encode_points(True, points)])
                if len(batch) == target:
                    if not put(batch):
                        return
                    batch, target = [], min(size, target * 2)
            if not batch or put(batch):
                put(done)
        except BaseException as exc:  # handed to the consumer, which raises it
            put(exc)

    threading.Thread(target=produce, name="wallet-stream", daemon=True).start()
    try:
        while (item := chunks.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()  # the consumer gave up: let the producer end


def start_aggregation(
    wallets: list[list[Any]], gateway: FirestoreGateway, read_time: datetime | None
) -> Future:
    uids = [uid for uid, _ in wallets]
    return gateway.start_aggregation(uids, concurrency=settings.RECONCILE_CONCURRENCY, read_time=read_time)


@dataclass
class ChunkFindings:
    wallets_checked: int = 0
    drift_count: int = 0
    malformed_count: int = 0
    total_abs_drift: int = 0
    total_wallet_points: int = 0
    total_ledger_sum: int = 0

    def __post_init__(self) -> None:
        self.violations: list[dict[str, Any]] = []
        # Candidates the re-check cleared: {"uid", "wallet_points", "ledger_sum", "delta"} as first read.
        self.cleared: list[dict[str, Any]] = []

    def add(self, uid: str, first: dict[str, Any], confirmed: tuple[int, int, dict[str, Any] | None]) -> None:
        wallet_points, ledger_sum, violation = confirmed
        self.total_wallet_points += wallet_points
        self.total_ledger_sum += ledger_sum
        if violation is None:
            self.cleared.append({"uid": uid, **first})
            return
        violation["at_read_time"] = first
        self.violations.append(violation)
        if violation["kind"] == ViolationKind.MALFORMED:
            self.malformed_count += 1
        else:
            self.drift_count += 1
        if violation["delta"] is not None:
            self.total_abs_drift += abs(violation["delta"])


def check_wallets(
    wallets: list[list[Any]],
    *,
    gateway: FirestoreGateway,
    totals: dict[str, LedgerTotals] | None = None,
    read_time: datetime | None = None,
) -> ChunkFindings:
    """Compare each wallet's points with its ledger's aggregated sum (as of
    `read_time`, the run's T0, when given; live otherwise).

    A mismatch is only a candidate: it is re-read live inside a transaction
    (wallet and ledger sum together) and reported only if it still holds there,
    with what it was at the first read; one that no longer holds is kept as
    cleared. `totals` are the chunk's ledger aggregations when already fetched.
    """
    if totals is None:
        totals = start_aggregation(wallets, gateway, read_time).result()
    findings = ChunkFindings()
    candidates = {}
    for uid, encoded in wallets:
        exists, points = decode_points(encoded)
        ledger = totals[uid]
        if not exists and ledger.count == 0:
            continue  # asked for by uid, but neither a wallet nor a ledger: nothing to check
        findings.wallets_checked += 1
        first = instant.first_read(exists, points, ledger)
        if first is None:
            assert is_points(ledger.total)  # agreeing with the wallet: an integer
            findings.total_wallet_points += points
            findings.total_ledger_sum += ledger.total
        else:
            candidates[uid] = first
    for uid, confirmed in _confirm(list(candidates), gateway).items():
        findings.add(uid, candidates[uid], confirmed)
    return findings


def _confirm(uids: list[str], gateway: FirestoreGateway) -> dict[str, tuple[int, int, dict[str, Any] | None]]:
    """Re-check candidates live in transactions; classify those whose drift holds.

    Returns {uid: (wallet points, ledger sum, violation or None)}, for the totals.
    """
    if not uids:
        return {}
    states = gateway.read_wallets_and_ledgers(uids, concurrency=RECHECK_CONCURRENCY)
    confirmed: dict[str, tuple[int, int, dict[str, Any] | None]] = {}
    drifting = []
    for uid in uids:
        state = states[uid]
        points = 0 if not state.exists else state.points
        if balances_agree(points, state.ledger.total):
            assert is_points(state.ledger.total)  # agreeing with the wallet: an integer
            # A write landed between the first read and the re-check: no drift.
            confirmed[uid] = (points, state.ledger.total, None)
        else:
            drifting.append(uid)
    ledgers = gateway.ledgers(drifting, concurrency=RECHECK_CONCURRENCY)
    for uid in drifting:
        state = states[uid]
        points = 0 if not state.exists else state.points
        violation = classify(uid, points, ledgers[uid], exists=state.exists)
        if violation is None:
            # The entries themselves agree with the wallet (the server summed
            # integers into a double): no violation.
            confirmed[uid] = (points, points, None)
        else:
            confirmed[uid] = (violation["wallet_points"] or 0, violation["ledger_sum"], violation)
    return confirmed


def classify(
    uid: str, points: Any, entries: list[tuple[str, dict[str, Any]]], *, exists: bool
) -> dict[str, Any] | None:
    """Read a confirmed violation's ledger to tell malformed entries from plain drift.

    The entries are the last word: None when every amount is an integer and they
    add up to the wallet's points after all. A malformed entry that a correction
    supersedes (revassure.ledger.superseded_entries) is not malformed: it counts
    for nothing, its correction for its amount, and the details say so.
    """
    int_sum, count, malformed, corrected = 0, 0, [], []
    superseded = superseded_entries(entries)
    for entry_id, fields in entries:
        count += 1
        amount = fields.get("amount", MISSING)
        if is_points(amount):
            int_sum += amount
        elif entry_id in superseded:
            corrected.append(
                {"entry": entry_id, "amount": _describe(amount), "corrected_by": superseded[entry_id]}
            )
        else:
            malformed.append({"entry": entry_id, "amount": _describe(amount), "problem": _problem(amount)})
    details: dict[str, Any] = {}
    if not exists:
        details["wallet"] = "wallet document missing; its points count as 0"
    elif not is_points(points):
        details["wallet"] = f"points is {_problem(points)}: {_describe(points)}"
    if malformed:
        details["malformed_entries"] = malformed[:MAX_LISTED_MALFORMED]
        details["malformed_entries_total"] = len(malformed)
    if corrected:
        details["corrected_entries"] = corrected[:MAX_LISTED_MALFORMED]
    wallet_points = points if is_points(points) else None
    if not malformed and balances_agree(wallet_points, int_sum):
        return None
    kind = ViolationKind.MALFORMED if malformed or wallet_points is None else ViolationKind.DRIFT
    return {
        "uid": uid,
        "kind": kind,
        "wallet_points": wallet_points,
        "ledger_sum": int_sum,
        "delta": None if wallet_points is None else wallet_points - int_sum,
        "entries": count,
        "details": details,
    }


def _problem(value: Any) -> str:
    if value is MISSING:
        return "missing"
    if isinstance(value, float):
        return "not an integer"
    return "not a number"


def _describe(value: Any) -> str:
    return "missing" if value is MISSING else f"{type(value).__name__} {value!r}"[:120]


# Chunks are stored as JSON: points that are not JSON values (a timestamp, a
# map) are kept as their description, which is all a report needs of them.
def _encode_points(exists: bool, points: Any) -> Any:
    if not exists:
        return {"$absent": "wallet"}
    if points is MISSING:
        return {"$absent": "points"}
    if points is None or isinstance(points, bool | int | float | str):
        return points
    return {"$value": _describe(points)}


def decode_points(encoded: Any) -> tuple[bool, Any]:
    """(exists, raw points) of a wallet as wallet_chunks yields it."""
    if isinstance(encoded, dict):
        if encoded.get("$absent") == "wallet":
            return False, 0
        if encoded.get("$absent") == "points":
            return True, MISSING
        return True, encoded.get("$value")
    return True, encoded
