"""The Firestore gateway: the one package that speaks to Firestore.

It owns the clients, the collections (declared once, in model.COLLECTIONS),
the retry policy and the mapping of documents to plain Python values.
Everything else in revassure goes through a `FirestoreGateway` (usually
`get_gateway()`), and services take it as an argument so tests can point one
at an isolated emulator project.

- gateway.py: `FirestoreGateway`, one connection and the parts below, each an
  object given the connection, their public methods its own;
- client.py: the connection: the clients and the event loop, once per process,
  kept from everyone but the parts; the retry policy every call follows
  (FIRESTORE_RETRY_DEADLINE, FIRESTORE_CALL_TIMEOUT);
- reads.py: wallets, ledger totals and entries; entry_reads.py: entries by key,
  identity owners, credits in a period; report_reads.py: mirrored reports and config;
- transactions.py: transactions and commits through the generated client;
- writes.py: balance changes, provider events, seeding, reports and mirrors;
- encoding.py: raw values, writes and requests; model.py: what calls return;
- snapshots.py: every document read out exactly (snapshot_values.py: a document as
  a snapshot line holds it); restores.py: written back exactly, and what a restore
  asks first; managed_export.py: Firestore's own export;
- readtime.py: the server's present, and whether the backend reads at a read time.
- listen.py: the writes of wallets and ledger entries as they happen (Listen).

Only public google-cloud-firestore API is used: the `Client`, and for the hot
paths the generated `FirestoreClient`/`FirestoreAsyncClient` with the raw
protobuf classes behind the public types.
"""

from __future__ import annotations

import os
import threading

from django.conf import settings

from revassure.firestore.errors import (
    FirestoreContention,
    FirestoreError,
    FirestoreRefused,
    FirestoreUnavailable,
)
from revassure.firestore.gateway import FirestoreGateway
from revassure.firestore.listen import Listener, Write
from revassure.firestore.model import (
    AUDIT_LOG,
    COLLECTIONS,
    CONFIG,
    IDENTITIES,
    LEDGER,
    MIGRATIONS,
    MISSING,
    REPORTS,
    SETTLEMENT_REPORTS,
    SETTLEMENT_ROWS,
    TRANSIENT_ERRORS,
    VIOLATIONS,
    WALLETS,
    Access,
    BalanceChange,
    ChangeOutcome,
    Collection,
    Decide,
    EventOutcome,
    LedgerTotals,
    Missing,
    WalletState,
    WalletView,
)
from revassure.firestore.readtime import ReadTimeSupport

__all__ = [
    "AUDIT_LOG",
    "COLLECTIONS",
    "CONFIG",
    "IDENTITIES",
    "LEDGER",
    "MIGRATIONS",
    "MISSING",
    "VIOLATIONS",
    "REPORTS",
    "SETTLEMENT_ROWS",
    "SETTLEMENT_REPORTS",
    "TRANSIENT_ERRORS",
    "WALLETS",
    "Access",
    "BalanceChange",
    "ChangeOutcome",
    "Collection",
    "Decide",
    "EventOutcome",
    "FirestoreContention",
    "FirestoreError",
    "FirestoreGateway",
    "FirestoreRefused",
    "FirestoreUnavailable",
    "LedgerTotals",
    "Listener",
    "Missing",
    "ReadTimeSupport",
    "WalletState",
    "WalletView",
    "Write",
    "close_gateway",
    "get_gateway",
]


_gateways: dict[str, FirestoreGateway] = {}
_gateways_lock = threading.Lock()


def get_gateway(project: str | None = None) -> FirestoreGateway:
    """The process-wide gateway for a project (the configured one by default)."""
    project = project or settings.GOOGLE_CLOUD_PROJECT
    if settings.FIRESTORE_EMULATOR_HOST:
        # The client reads the emulator address from the environment only.
        os.environ.setdefault("FIRESTORE_EMULATOR_HOST", settings.FIRESTORE_EMULATOR_HOST)
    with _gateways_lock:
        gateway = _gateways.get(project)
        if gateway is None:
            gateway = _gateways[project] = FirestoreGateway(
                project,
                retry_deadline=settings.FIRESTORE_RETRY_DEADLINE,
                call_timeout=settings.FIRESTORE_CALL_TIMEOUT,
            )
        return gateway


def close_gateway(project: str) -> None:
    """Forget the process-wide gateway of `project` and close its clients (the
    tests do, after each test's project); the next get_gateway makes a new one."""
    with _gateways_lock:
        gateway = _gateways.pop(project, None)
    if gateway is not None:
        gateway.close()
