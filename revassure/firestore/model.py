"""The gateway's plain values: the collections it keeps, retryable errors, and what its calls return."""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from google.api_core import exceptions as gexc

WALLETS = "wallets"
LEDGER = "ledger"
REPORTS = "reconciliationReports"
VIOLATIONS = "violations"  # below a reconciliation report, one document per wallet
SETTLEMENT_REPORTS = "settlementReports"
SETTLEMENT_ROWS = "rows"  # below a settlement report, one document per statement row
MIGRATIONS = "dataMigrations"
AUDIT_LOG = "auditLog"
CONFIG = "config"
# One document per business identity credited (payment, refund, chargeback),
# keyed by its ledger entry id and naming the wallet that holds it: created in
# the commit that writes the entry, so an identity credits one wallet, once.
IDENTITIES = "ledgerIdentities"
IDENTITY_ENTRIES = "entries"  # below each shard of IDENTITIES (see identity_path)


class Access(enum.Enum):
    """Who may touch a collection from outside the back office (firestore.rules).
    Services (the points app's backend, revassure) bypass the rules either way."""

    # A signed-in app user reads the document named by their uid and its
    # subcollections; no client writes.
    OWNER_READS = "owner reads"
    # No client reads or writes.
    SERVICE_ONLY = "service only"


@dataclass(frozen=True)
class Collection:
    """A root collection the product keeps, with the subcollections below its
    documents; whether snapshots hold it; what firestore.rules must allow."""

    name: str
    subcollections: tuple[str, ...] = ()
    in_snapshots: bool = True
    access: Access = Access.SERVICE_ONLY


# Every collection the product keeps, declared once: the gateway writes no other
# name, snapshots hold those marked so, and tests check firestore.rules and the
# gateway's writes against it. A new collection starts here.
COLLECTIONS = (
    Collection(WALLETS, (LEDGER,), access=Access.OWNER_READS),
    Collection(REPORTS, (VIOLATIONS,)),
    Collection(SETTLEMENT_REPORTS, (SETTLEMENT_ROWS,)),
    Collection(MIGRATIONS),
    Collection(AUDIT_LOG),
    Collection(CONFIG),  # config/adjustments is the freeze
    # Its shard documents are never written, only the entries below them.
    Collection(IDENTITIES, (IDENTITY_ENTRIES,)),
)


def identity_path(entry_id: str) -> str:
    """Where an identity's marker lives, below IDENTITIES: in one of 256 shards
    (`ledgerIdentities/{shard}/entries/{entry id}`), the shard from a hash of the
    id. Firestore does not care; the npm emulator copies a whole collection on
    each create, so one flat collection of every payment ever credited would make
    each credit slower than the last."""
    shard = hashlib.sha256(entry_id.encode()).hexdigest()[:2]
    return f"{shard}/{IDENTITY_ENTRIES}/{entry_id}"


# Errors worth another try: the call may succeed if made again. Anything else
# (a bad argument, a missing permission) fails at once.
TRANSIENT_ERRORS = (
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.Aborted,
    gexc.ResourceExhausted,
)


class Missing:
    """Marks a field that is absent from a document (not the same as a null)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING = Missing()


@dataclass(frozen=True)
class LedgerTotals:
    # `total` is whatever Firestore's sum() returned: an int when every amount
    # is an integer, a float when any amount is a float (or past 2**63).
    total: int | float
    count: int


@dataclass(frozen=True)
class WalletState:
    """A wallet and its ledger totals, read together in one transaction."""

    exists: bool
    points: Any  # the raw `points` value, MISSING when absent
    ledger: LedgerTotals


@dataclass(frozen=True)
class BalanceChange:
    """What a heal or manual adjustment does to one wallet.

    mode: "rebalance" (points := ledger sum, with an auditLog record),
    "post_adjustment" (append a ledger entry of `amount`, wallet untouched) or
    "adjustment" (append a ledger entry of `amount` and move the wallet by it).
    `marker_id` is the id of the entry or auditLog record, derived from the
    request; `record` holds the fields written to it besides amounts and times.
    """

    uid: str
    mode: str
    amount: int
    expected_points: int
    expected_ledger_sum: int
    marker_id: str
    record: dict[str, Any]


@dataclass(frozen=True)
class EventOutcome:
    status: str  # applied | duplicate | deferred | quarantined
    reason: str = ""
    points_before: Any = None
    points_after: Any = None


@dataclass(frozen=True)
class ChangeOutcome:
    status: str  # applied | already_applied | stale
    points_before: Any = None
    ledger_before: Any = None
    points_after: Any = None


@dataclass(frozen=True)
class WalletView:
    """What a provider event's wallet looks like at the moment of deciding: what
    the gateway reads for the business rules (backfill.rules.decide), in a
    transaction or, for a dry run, now."""

    entry_exists: bool  # the event's own ledger entry
    wallet_exists: bool
    points: Any
    original_amount: int | None = None  # the original purchase, for a reversal
    reversed_before: int = 0  # sum of earlier reversals of that purchase (<= 0)
    entry_delivery_id: int | None = None  # which delivery wrote the entry, when it exists
    identity_owner: str | None = None  # the wallet already credited with this business identity


# The business rules for provider events, passed in by the caller (the gateway
# does not know them): decide(event, WalletView, *, allow_negative) returns a
# decision with `status` (applied | duplicate | deferred | quarantined),
# `reason`, and `entry`, the ledger entry's fields when applied. The event has
# user_id, entry_id, original_entry_id and a signed `amount`.
Decide = Callable[..., Any]


class ProviderEventFacts(Protocol):
    """What the gateway reads of a provider event (backfill.events.ProviderEvent)."""

    @property
    def user_id(self) -> str: ...

    @property
    def entry_id(self) -> str: ...

    @property
    def original_entry_id(self) -> str: ...

    @property
    def amount(self) -> int: ...


def ledger_totals(total: Any, count: Any) -> LedgerTotals:
    """The sum and count aggregations of a ledger, as the server sent them."""
    count = int(count or 0)
    # An empty ledger's balance is the integer zero, whatever the server sent
    # (null, or a double 0.0 from some emulators).
    total = total if count else 0
    return LedgerTotals(total=0 if total is None else total, count=count)
