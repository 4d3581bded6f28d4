"""The Firestore gateway: the one module that speaks to Firestore.

It owns the clients, the collection names, the retry policy and the mapping of
documents to plain Python values. Everything else in revassure goes through a
`FirestoreGateway` (usually `get_gateway()`), and services take it as an
argument so tests can point one at an isolated emulator project.

Clients are created lazily, once per process: django-q2 forks its workers, and
a gRPC channel created before the fork hangs in the child.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.api_core import retry_async as gretry_async
from google.cloud import firestore

WALLETS = "wallets"
LEDGER = "ledger"
REPORTS = "reconciliationReports"
MIGRATIONS = "dataMigrations"
AUDIT_LOG = "auditLog"
CONFIG = "config"

# Errors worth another try: the call may succeed if made again. Anything else
# (a bad argument, a missing permission) fails at once.
TRANSIENT_ERRORS = (
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.Aborted,
    gexc.ResourceExhausted,
)
_is_transient = gretry.if_exception_type(*TRANSIENT_ERRORS)
_BATCH_LIMIT = 500  # writes in one atomic commit


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


class FirestoreGateway:
    def __init__(self, project: str, *, retry_deadline: float = 60.0, call_timeout: float = 30.0):
        self.project = project
        self.call_timeout = call_timeout
        # Exponential backoff with full jitter (google-api-core draws each sleep
        # uniformly below the current cap), bounded by a total deadline.
        self.retry = gretry.Retry(
            predicate=_is_transient, initial=0.2, maximum=10.0, multiplier=2.0, timeout=retry_deadline
        )
        self.async_retry = gretry_async.AsyncRetry(
            predicate=_is_transient, initial=0.2, maximum=10.0, multiplier=2.0, timeout=retry_deadline
        )
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._client: firestore.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._async_client: firestore.AsyncClient | None = None

    # -- clients -----------------------------------------------------------

    @property
    def client(self) -> firestore.Client:
        self._ensure_process()
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = firestore.Client(project=self.project)
        return self._client

    def _ensure_process(self) -> None:
        pid = os.getpid()
        if self._pid != pid:
            with self._lock:
                if self._pid != pid:
                    # Inherited from a parent process: unusable, start afresh.
                    self._client = None
                    self._loop = None
                    self._async_client = None
                    self._pid = pid

    def _run_async(self, coro):
        """Run a coroutine on this process's gateway event loop and wait for it.

        The async client multiplexes many aggregation queries over one channel
        at a fraction of the per-call CPU cost of the threaded sync client.
        """
        self._ensure_process()
        if self._loop is None:
            with self._lock:
                if self._loop is None:
                    loop = asyncio.new_event_loop()
                    threading.Thread(target=loop.run_forever, name="firestore-gateway", daemon=True).start()
                    self._async_client = asyncio.run_coroutine_threadsafe(
                        self._make_async_client(), loop
                    ).result()
                    self._loop = loop
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def _make_async_client(self) -> firestore.AsyncClient:
        return firestore.AsyncClient(project=self.project)

    def _wallet(self, uid: str):
        return self.client.collection(WALLETS).document(uid)

    # -- wallets and ledgers ------------------------------------------------

    def stream_wallets(self) -> Iterator[tuple[str, Any]]:
        """Yield (uid, raw points) for every wallet, streamed in document order."""
        query = self.client.collection(WALLETS).select(["points"])
        for snap in query.stream(retry=self.retry):
            yield snap.id, _field(snap.to_dict(), "points")

    def get_wallet_points(self, uids: Iterable[str]) -> dict[str, tuple[bool, Any]]:
        """(exists, raw points) of each given wallet, in one batched read."""
        refs = [self._wallet(uid) for uid in uids]
        found: dict[str, tuple[bool, Any]] = {ref.id: (False, MISSING) for ref in refs}
        for snap in self.client.get_all(refs, retry=self.retry, timeout=self.call_timeout):
            if snap.exists:
                found[snap.id] = (True, _field(snap.to_dict(), "points"))
        return found

    def aggregate_ledgers(self, uids: list[str], *, concurrency: int) -> dict[str, LedgerTotals]:
        """sum(amount) and count() of each wallet's ledger, `concurrency` queries at a time."""
        return self._run_async(self._aggregate_many(uids, concurrency))

    async def _aggregate_many(self, uids: list[str], concurrency: int) -> dict[str, LedgerTotals]:
        client = self._async_client
        gate = asyncio.Semaphore(concurrency)

        async def one(uid: str) -> tuple[str, LedgerTotals]:
            async with gate:
                query = client.collection(WALLETS).document(uid).collection(LEDGER)
                agg = query.sum("amount", alias="total")
                agg.count(alias="count")
                rows = await agg.get(retry=self.async_retry, timeout=self.call_timeout)
                return uid, _totals(rows)

        return dict(await asyncio.gather(*(one(uid) for uid in uids)))

    def read_wallet_and_ledger(self, uid: str) -> WalletState:
        """Read a wallet and its ledger totals together, in one transaction.

        Both reads see the same snapshot, so a write that moves the ledger and the
        wallet together (as the points app does) is seen whole or not at all.
        """
        wallet = self._wallet(uid)
        agg = wallet.collection(LEDGER).sum("amount", alias="total")
        agg.count(alias="count")

        @firestore.transactional
        def read(transaction) -> WalletState:
            snap = wallet.get(transaction=transaction)
            rows = agg.get(transaction=transaction)
            points = _field(snap.to_dict(), "points") if snap.exists else MISSING
            return WalletState(exists=snap.exists, points=points, ledger=_totals(rows))

        return read(self.client.transaction(read_only=True))

    def ledger_entries(self, uid: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every ledger entry of a wallet, as (entry id, fields)."""
        for snap in self._wallet(uid).collection(LEDGER).stream(retry=self.retry):
            yield snap.id, snap.to_dict()

    def write_wallets(self, wallets: Iterable[tuple[str, Any, dict[str, dict[str, Any]]]]) -> int:
        """Write wallets with their ledgers in atomic batches (seeding, tests).

        Each item is (uid, points, {entry id: fields}); points of MISSING leave the
        field out. A wallet and its entries always land in the same commit.
        """
        written = 0
        batch, size = self.client.batch(), 0
        for uid, points, entries in wallets:
            if size and size + 1 + len(entries) > _BATCH_LIMIT:
                batch.commit(retry=self.retry, timeout=self.call_timeout)
                batch, size = self.client.batch(), 0
            wallet = self._wallet(uid)
            doc = {"updatedAt": firestore.SERVER_TIMESTAMP}
            if points is not MISSING:
                doc["points"] = points
            batch.set(wallet, doc)
            for entry_id, fields in entries.items():
                batch.set(wallet.collection(LEDGER).document(entry_id), fields)
            size += 1 + len(entries)
            written += 1
        if size:
            batch.commit(retry=self.retry, timeout=self.call_timeout)
        return written

    def append_entry(self, uid: str, entry_id: str, fields: dict[str, Any]) -> None:
        """Append a ledger entry and move the wallet by its amount, atomically.

        Raises AlreadyExists when the entry is already in the ledger.
        """
        wallet = self._wallet(uid)
        batch = self.client.batch()
        batch.create(wallet.collection(LEDGER).document(entry_id), fields)
        batch.set(
            wallet,
            {"points": firestore.Increment(fields["amount"]), "updatedAt": firestore.SERVER_TIMESTAMP},
            merge=True,
        )
        batch.commit(retry=self.retry, timeout=self.call_timeout)

    # -- reports -----------------------------------------------------------

    def put_report(self, run_id: str, report: dict[str, Any], violations: Iterable[dict[str, Any]]) -> None:
        """Mirror a report: its header document, and one document per violation
        (keyed by uid) in its `violations` subcollection, which keeps each
        document far below Firestore's 1 MiB limit however many there are.
        The header is written last, so a reader that finds it finds them all.
        """
        doc = self.client.collection(REPORTS).document(run_id)
        batch, size = self.client.batch(), 0
        for violation in violations:
            batch.set(doc.collection("violations").document(violation["uid"]), violation)
            size += 1
            if size == _BATCH_LIMIT:
                batch.commit(retry=self.retry, timeout=self.call_timeout)
                batch, size = self.client.batch(), 0
        if size:
            batch.commit(retry=self.retry, timeout=self.call_timeout)
        doc.set(report, retry=self.retry, timeout=self.call_timeout)

    def get_report(self, run_id: str) -> dict[str, Any] | None:
        snap = (
            self.client.collection(REPORTS).document(run_id).get(retry=self.retry, timeout=self.call_timeout)
        )
        return snap.to_dict() if snap.exists else None

    def stream_reports(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for snap in self.client.collection(REPORTS).stream(retry=self.retry):
            yield snap.id, snap.to_dict()

    def ping(self) -> None:
        """Raise unless Firestore answers a trivial read."""
        self.client.collection(CONFIG).document("ping").get(retry=self.retry, timeout=self.call_timeout)


def _field(data: dict[str, Any] | None, name: str) -> Any:
    if not data or name not in data:
        return MISSING
    return data[name]


def _totals(rows) -> LedgerTotals:
    values = {result.alias: result.value for row in rows for result in row}
    count = int(values.get("count") or 0)
    # An empty ledger's balance is the integer zero, whatever the server sent
    # (null, or a double 0.0 from some emulators).
    total = values.get("total") if count else 0
    return LedgerTotals(total=0 if total is None else total, count=count)


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
