"""What the wallet page shows about one uid, gathered from Firestore (through the
gateway) and from our own records: the wallet now, its ledger newest first with
who wrote each entry of ours, its violations, balance requests and deliveries.

Read-only: nothing here changes anything. The page (wallets.admin) formats it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import F, QuerySet

from backfill.models import ProviderEventDelivery
from reconciliation.models import (
    REQUEST_ENTRY,
    BalanceRequest,
    Break,
    ReconciliationRun,
    RunStatus,
    Violation,
)
from revassure.firestore import FirestoreGateway, WalletState
from revassure.ledger import is_points, superseded_entries

ENTRIES_PER_PAGE = 25
RECENT = 20  # violations, requests and deliveries listed; the page links to all of them
RUNS_LOOKED_AT = 200  # completed runs searched for the latest one that checked the wallet


@dataclass(frozen=True)
class Entry:
    """One ledger entry as Firestore has it (raw values: a malformed amount stays as it is)."""

    entry_id: str
    fields: dict[str, Any]

    @property
    def created_at(self) -> datetime | None:
        value = self.fields.get("createdAt")
        return value if isinstance(value, datetime) and value.tzinfo is not None else None

    @property
    def amount(self) -> Any:
        return self.fields.get("amount")


@dataclass(frozen=True)
class Writer:
    """Which of our processes wrote an entry: a delivery (webhook or replay, and
    its migration) or a balance request (heal or manual adjustment)."""

    kind: str  # replay | webhook | reversal | heal | adjustment | correction
    delivery: ProviderEventDelivery | None = None
    request: BalanceRequest | None = None


def wallet_now(gateway: FirestoreGateway, uid: str) -> WalletState:
    """The wallet and its ledger's sum and count, read together now."""
    return gateway.read_wallets_and_ledgers([uid], concurrency=1)[uid]


@dataclass(frozen=True)
class Ledger:
    page: Page  # of Entry
    malformed: int  # entries whose amount is not an integer (left out of Firestore's sum)
    # {malformed entry id: the correction that supersedes it}: those count as the correction says.
    corrected: dict[str, str]


def ledger_page(gateway: FirestoreGateway, uid: str, number: Any) -> Ledger:
    """One page of the wallet's ledger, newest first (by createdAt; entries
    without a usable createdAt come last, by id), and how many entries of the
    whole ledger have a malformed amount (not counting those a correction
    supersedes, named in `corrected`).

    Paged here, over the wallet's whole ledger read once: the emulator ignores
    query cursors, and ordering in Firestore would leave out exactly the entries
    a reviewer needs to see (those without createdAt). A wallet's ledger is a
    person's history, small enough to read whole."""
    raw = gateway.ledgers([uid], concurrency=1)[uid]
    entries = [Entry(entry_id, fields or {}) for entry_id, fields in raw]
    dated = sorted(
        (e for e in entries if e.created_at), key=lambda e: (e.created_at, e.entry_id), reverse=True
    )
    undated = sorted((e for e in entries if not e.created_at), key=lambda e: e.entry_id)
    corrected = superseded_entries(raw)
    malformed = sum(1 for e in entries if not is_points(e.amount) and e.entry_id not in corrected)
    return Ledger(Paginator(dated + undated, ENTRIES_PER_PAGE).get_page(number), malformed, corrected)


def writers(entries: list[Entry]) -> dict[str, Writer]:
    """{entry id: Writer} for the entries we wrote; the points app's own are absent."""
    delivery_ids = {e.fields["deliveryId"] for e in entries if type(e.fields.get("deliveryId")) is int}
    request_ids = {int(m.group(2)) for e in entries if (m := REQUEST_ENTRY.match(e.entry_id))}
    deliveries = ProviderEventDelivery.objects.select_related("migration").in_bulk(delivery_ids)
    requests = BalanceRequest.objects.in_bulk(request_ids)
    found = {}
    for entry in entries:
        delivery_id = entry.fields.get("deliveryId")
        delivery = deliveries.get(delivery_id) if type(delivery_id) is int else None
        match = REQUEST_ENTRY.match(entry.entry_id)
        if delivery is not None:
            kind = "reversal" if entry.fields.get("type") == "reversal" else delivery.source
            found[entry.entry_id] = Writer(kind, delivery=delivery)
        elif match and int(match.group(2)) in requests:
            found[entry.entry_id] = Writer(match.group(1), request=requests[int(match.group(2))])
    return found


def current_violation(uid: str) -> Violation | None:
    """The wallet's violation in the latest completed run that checked it; None
    when that run found it clean, or no run has checked it yet."""
    runs = ReconciliationRun.objects.filter(status=RunStatus.COMPLETED).order_by("-id")
    for run in runs.only("id", "scope_uids")[:RUNS_LOOKED_AT]:
        if not run.scope_uids or uid in run.scope_uids:
            return Violation.objects.select_related("run").filter(run=run, uid=uid).first()
    return None


def violations(uid: str) -> list[tuple[Violation, BalanceRequest | None]]:
    """The wallet's latest violations, newest run first, each with its latest heal request."""
    found = list(Violation.objects.filter(uid=uid).select_related("run").order_by("-run_id")[:RECENT])
    heals: dict[int, BalanceRequest] = {}
    for heal in BalanceRequest.objects.filter(violation__in=found).order_by("created_at", "id"):
        assert heal.violation_id is not None  # filtered on its violation
        heals[heal.violation_id] = heal  # the latest wins
    return [(violation, heals.get(violation.pk)) for violation in found]


def breaks(uid: str) -> QuerySet[Break]:
    """The wallet's breaks (episodes of drift), open first, then newest."""
    return (
        Break.objects.filter(uid=uid)
        .select_related("owner", "heal_request")
        .order_by(F("closed_at").asc(nulls_first=True), "-first_seen", "-id")
    )


def requests(uid: str) -> QuerySet[BalanceRequest]:
    return BalanceRequest.objects.filter(uid=uid).select_related("proposed_by").order_by("-created_at", "-id")


def deliveries(uid: str) -> QuerySet[ProviderEventDelivery]:
    return (
        ProviderEventDelivery.objects.filter(user_id=uid)
        .select_related("migration")
        .order_by("-received_at", "-id")
    )
