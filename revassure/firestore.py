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
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.utils import timezone
from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.api_core import retry_async as gretry_async
from google.api_core.gapic_v1 import method as gapic_method
from google.api_core.gapic_v1 import method_async as gapic_method_async
from google.cloud import firestore
from google.cloud.firestore_v1 import _helpers
from google.cloud.firestore_v1.async_transaction import async_transactional
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.types import common as common_pb
from google.cloud.firestore_v1.types import document as document_pb
from google.cloud.firestore_v1.types import firestore as firestore_pb
from google.cloud.firestore_v1.types import query as query_pb
from google.cloud.firestore_v1.types import write as write_pb

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
_BACKOFF_INITIAL, _BACKOFF_MAX, _BACKOFF_MULTIPLIER = 0.2, 10.0, 2.0  # seconds


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


class FirestoreGateway:
    def __init__(self, project: str, *, retry_deadline: float = 60.0, call_timeout: float = 30.0):
        self.project = project
        self.call_timeout = call_timeout
        # Exponential backoff with full jitter (google-api-core draws each sleep
        # uniformly below the current cap), bounded by a total deadline.
        backoff = {"initial": _BACKOFF_INITIAL, "maximum": _BACKOFF_MAX, "multiplier": _BACKOFF_MULTIPLIER}
        self.retry_deadline = retry_deadline
        self.retry = gretry.Retry(predicate=_is_transient, timeout=retry_deadline, **backoff)
        self.async_retry = gretry_async.AsyncRetry(predicate=_is_transient, timeout=retry_deadline, **backoff)
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._client: firestore.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._async_client: firestore.AsyncClient | None = None
        self._gates: dict[int, asyncio.Semaphore] = {}

    # -- clients -----------------------------------------------------------

    @property
    def client(self) -> firestore.Client:
        self._ensure_process()
        if self._client is None:
            with self._lock:
                if self._client is None:
                    client = firestore.Client(project=self.project)
                    transport = client._firestore_api._transport
                    _bind_begin_transaction(
                        transport, gapic_method.wrap_method, self.retry, self.call_timeout
                    )
                    self._client = client
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

    def _submit(self, coro) -> Future:
        """Schedule a coroutine on this process's gateway event loop.

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
                    self._gates = {}
                    self._loop = loop
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def _make_async_client(self) -> firestore.AsyncClient:
        client = firestore.AsyncClient(project=self.project)
        transport = client._firestore_api._client._transport
        _bind_begin_transaction(
            transport, gapic_method_async.wrap_method, self.async_retry, self.call_timeout
        )
        return client

    def _wallet(self, uid: str):
        return self.client.collection(WALLETS).document(uid)

    # -- wallets and ledgers ------------------------------------------------

    def stream_wallets(self) -> Iterator[tuple[str, Any]]:
        """Yield (uid, raw points) for every wallet (Firestore sends them in document-id order).

        Documents are decoded straight from the query's protobuf responses
        rather than through DocumentSnapshots: a tenth of the CPU per wallet,
        which is most of a reconciliation's own cost beside the aggregations.
        A stream broken by a transient error is resumed after the last wallet
        seen (and anything at or before it skipped, in case a server ignores
        the cursor), with the same backoff and deadline as every other call.
        Resuming relies on that order; the npm emulator keeps insertion order
        but never breaks a stream.
        """
        last: str | None = None
        resumed = False
        sleeps = gretry.exponential_sleep_generator(_BACKOFF_INITIAL, _BACKOFF_MAX, _BACKOFF_MULTIPLIER)
        deadline = time.monotonic() + self.retry_deadline
        while True:
            try:
                for name, fields in self._wallet_documents(after=last):
                    if resumed and name <= last:
                        continue
                    last = name
                    points = fields.get("points")
                    yield name.rsplit("/", 1)[1], MISSING if points is None else self._decode(points)
                return
            except TRANSIENT_ERRORS:
                pause = next(sleeps)
                if time.monotonic() + pause > deadline:
                    raise
                time.sleep(pause)
                resumed = last is not None

    def _wallet_documents(self, after: str | None):
        client = self.client
        Query = query_pb.StructuredQuery
        structured = Query(
            from_=[Query.CollectionSelector(collection_id=WALLETS)],
            select=Query.Projection(fields=[Query.FieldReference(field_path="points")]),
        )
        if after is not None:
            structured.start_at = query_pb.Cursor(
                values=[document_pb.Value(reference_value=after)], before=False
            )
        request = firestore_pb.RunQueryRequest(
            parent=f"{client._database_string}/documents", structured_query=structured
        )
        for response in client._firestore_api.run_query(
            request=request, metadata=client._rpc_metadata, retry=None, timeout=None
        ):
            raw = response._pb
            if raw.HasField("document"):
                yield raw.document.name, raw.document.fields

    def _decode(self, value) -> Any:
        return _helpers.decode_value(value, self.client)

    def get_wallet_points(self, uids: Iterable[str]) -> dict[str, tuple[bool, Any]]:
        """(exists, raw points) of each given wallet, in one batched read."""
        uids = list(uids)
        found = self._wallet_versions(uids)
        return {uid: (True, found[uid][0]) if uid in found else (False, MISSING) for uid in uids}

    def start_aggregation(self, uids: list[str], *, concurrency: int) -> Future:
        """sum(amount) and count() of each wallet's ledger, `concurrency` queries at
        a time, without waiting: a Future of {uid: LedgerTotals}.

        Calls in flight together share one limit of `concurrency` queries, so a
        caller can queue the next batch while it handles the last one and keep
        Firestore busy without ever exceeding the limit.
        """
        return self._submit(self._aggregate_many(uids, concurrency))

    async def _aggregate_many(self, uids: list[str], concurrency: int) -> dict[str, LedgerTotals]:
        gate = self._gates.setdefault(concurrency, asyncio.Semaphore(concurrency))
        return await self._gather(uids, gate, self._aggregate)

    async def _aggregate(self, uid: str) -> LedgerTotals:
        """sum(amount) and count() of one wallet's ledger: one aggregation query.

        The request is a raw protobuf made from a prebuilt template (only the
        parent differs between wallets) and the answer is decoded from the raw
        response: the same query as `collection.sum().count().get()`, for half
        the client's CPU, which is what bounds a run once Firestore keeps up.
        """
        client = self._async_client
        request = _AggregationRequest(
            parent=f"{client._database_string}/documents/{WALLETS}/{uid}",
            structured_aggregation_query=_LEDGER_TOTALS,
        )
        wrapped = firestore_pb.RunAggregationQueryRequest.wrap(request)

        async def run() -> LedgerTotals:
            fields = None
            responses = await client._firestore_api.run_aggregation_query(
                request=wrapped, metadata=client._rpc_metadata, timeout=self.call_timeout
            )
            async for response in responses:
                if response._pb.HasField("result"):
                    fields = response._pb.result.aggregate_fields
            return self._raw_totals(fields)

        return await self.async_retry(run)()

    def _raw_totals(self, fields) -> LedgerTotals:
        fields = fields or {}
        return _ledger_totals(*(self._decode(fields[n]) if n in fields else None for n in ("total", "count")))

    def read_wallets_and_ledgers(self, uids: list[str], *, concurrency: int) -> dict[str, WalletState]:
        """Read each wallet and its ledger totals together, one transaction per wallet.

        Both reads of a wallet see the same snapshot, so a write that moves its
        ledger and its points together (as the points app does) is seen whole
        or not at all.
        """
        gate = asyncio.Semaphore(concurrency)
        return self._submit(self._gather(uids, gate, self._read_wallet_and_ledger)).result()

    async def _read_wallet_and_ledger(self, uid: str) -> WalletState:
        wallet = self._async_client.collection(WALLETS).document(uid)
        agg = wallet.collection(LEDGER).sum("amount", alias="total")
        agg.count(alias="count")

        @async_transactional
        async def read(transaction) -> WalletState:
            snap = await wallet.get(transaction=transaction)
            rows = await agg.get(transaction=transaction)
            points = _field(snap.to_dict(), "points") if snap.exists else MISSING
            return WalletState(exists=snap.exists, points=points, ledger=_totals(rows))

        try:
            return await read(self._async_client.transaction(read_only=True))
        except ValueError as exc:
            raise _real_error(exc) from None

    def ledgers(self, uids: list[str], *, concurrency: int) -> dict[str, list[tuple[str, dict[str, Any]]]]:
        """Every ledger entry of each given wallet, as (entry id, fields); for the few
        wallets whose entries must be looked at one by one."""
        gate = asyncio.Semaphore(concurrency)
        return self._submit(self._gather(uids, gate, self._ledger)).result()

    async def _ledger(self, uid: str) -> list[tuple[str, dict[str, Any]]]:
        query = self._async_client.collection(WALLETS).document(uid).collection(LEDGER)
        return [(snap.id, snap.to_dict()) async for snap in query.stream(retry=self.async_retry)]

    async def _gather(self, uids: list[str], gate: asyncio.Semaphore, read) -> dict[str, Any]:
        async def one(uid: str):
            async with gate:
                return uid, await read(uid)

        return dict(await asyncio.gather(*(one(uid) for uid in uids)))

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

    # -- balance changes ---------------------------------------------------

    def apply_balance_change(self, change: BalanceChange) -> ChangeOutcome:
        """Apply a heal or a manual adjustment in one Firestore transaction.

        The transaction first looks for the change's own marker (its ledger
        entry, or for a rebalance its auditLog record), whose id derives from
        the request: found means a previous attempt committed, and nothing is
        written again. Then it re-reads the wallet and its ledger sum and
        refuses (stale) unless they are exactly what the approver saw.
        """
        wallet = self._wallet(change.uid)
        marker = self._marker(change)
        agg = wallet.collection(LEDGER).sum("amount", alias="total")
        agg.count(alias="count")

        @firestore.transactional
        def apply(transaction) -> ChangeOutcome:
            if marker.get(transaction=transaction).exists:
                return ChangeOutcome("already_applied")
            snap = wallet.get(transaction=transaction)
            ledger = _totals(agg.get(transaction=transaction))
            points = _field(snap.to_dict(), "points") if snap.exists else MISSING
            # Strict types: a float 10.0 is not the integer 10 the approver saw.
            if (type(points), type(ledger.total)) != (int, int) or (points, ledger.total) != (
                change.expected_points,
                change.expected_ledger_sum,
            ):
                return ChangeOutcome("stale", points_before=points, ledger_before=ledger.total)
            stamp = {"updatedAt": firestore.SERVER_TIMESTAMP}
            if change.mode == "rebalance":
                after = ledger.total
                transaction.set(wallet, {"points": after, **stamp}, merge=True)
                transaction.create(
                    marker, {**change.record, "before": points, "after": after, "at": timezone.now()}
                )
            elif change.mode == "post_adjustment":
                after = points  # the ledger moves to meet the wallet
                transaction.create(
                    marker, {**change.record, "amount": change.amount, "createdAt": timezone.now()}
                )
            else:
                after = points + change.amount
                transaction.create(
                    marker, {**change.record, "amount": change.amount, "createdAt": timezone.now()}
                )
                transaction.set(wallet, {"points": after, **stamp}, merge=True)
            return ChangeOutcome(
                "applied", points_before=points, ledger_before=ledger.total, points_after=after
            )

        return _unmasked(apply, self.client.transaction())

    def balance_change_applied(self, change: BalanceChange) -> bool:
        """Whether the change's marker exists: the answer after an ambiguous failure."""
        return self._marker(change).get(retry=self.retry, timeout=self.call_timeout).exists

    def _marker(self, change: BalanceChange):
        if change.mode == "rebalance":
            return self.client.collection(AUDIT_LOG).document(change.marker_id)
        return self._wallet(change.uid).collection(LEDGER).document(change.marker_id)

    # -- provider events (backfill) ------------------------------------------

    def apply_provider_event(
        self, event, *, allow_negative: bool, delivery_id: int | None = None
    ) -> EventOutcome:
        """Apply one provider event to its wallet in one Firestore transaction.

        The transaction reads what backfill.rules.decide needs (the event's own
        entry, the wallet, for a reversal its original and earlier reversals),
        lets it decide, and writes the entry and moves the wallet only when the
        decision is `applied`.
        """
        from backfill.rules import decide

        wallet = self._wallet(event.user_id)
        entry = wallet.collection(LEDGER).document(event.entry_id)

        @firestore.transactional
        def apply(transaction) -> EventOutcome:
            view = self._event_view(event, transaction=transaction)
            if view.entry_exists and delivery_id is not None and view.entry_delivery_id == delivery_id:
                # This very delivery committed before its worker died: applied, once.
                return EventOutcome("applied", "committed by an earlier attempt of this delivery")
            decision = decide(event, view, allow_negative=allow_negative)
            if decision.status != "applied":
                return EventOutcome(decision.status, decision.reason)
            transaction.create(entry, {**decision.entry, "deliveryId": delivery_id})
            transaction.update(
                wallet, {"points": firestore.Increment(event.amount), "updatedAt": firestore.SERVER_TIMESTAMP}
            )
            return EventOutcome(
                "applied", decision.reason, points_before=view.points, points_after=view.points + event.amount
            )

        return _unmasked(apply, self.client.transaction())

    def apply_payments(
        self,
        items: list[tuple[Any, int]],
        *,
        known: dict[str, tuple[int, Any]] | None = None,
        outcomes: dict[int, EventOutcome] | None = None,
    ) -> dict[int, EventOutcome]:
        """Apply many payment events (event, delivery id) in few atomic commits.

        Each commit holds one payment per wallet: the ledger entry (`create`, so
        an entry that exists fails the commit) and the wallet's increment, on
        the condition that the wallet is unchanged since it was read (its update
        time). A commit that fails is split in halves until the one event at
        fault goes through the single transactional path, which says duplicate,
        quarantined or applied. Same checks as one at a time, far fewer round
        trips.

        `known` carries, from one call to the next of the same run, the points
        and update time of the wallets this run committed to: they need no
        second read, and the update-time condition still refuses the commit if
        anyone else wrote the wallet since.

        Outcomes go into `outcomes` (by delivery id) as each commit lands, so
        when a call raises half-way, the caller still knows which committed.
        """
        known = {} if known is None else known
        outcomes = {} if outcomes is None else outcomes
        group: list[tuple[Any, int]] = []
        for event, delivery_id in items:
            if any(other.user_id == event.user_id for other, _ in group):
                self._commit_payments(group, outcomes, known)
                group = []
            group.append((event, delivery_id))
        self._commit_payments(group, outcomes, known)
        return outcomes

    def _commit_payments(
        self, group: list[tuple[Any, int]], outcomes: dict[int, EventOutcome], known: dict
    ) -> None:
        from backfill.rules import WalletView, decide

        if not group:
            return
        unread = [event.user_id for event, _ in group if event.user_id not in known]
        if unread:
            known.update(self._wallet_versions(unread))
        writes, planned = [], []
        for event, delivery_id in group:
            points, version = known.get(event.user_id, (MISSING, None))
            if type(points) is not int:
                # Unknown user or malformed wallet: the single path says which.
                known.pop(event.user_id, None)
                outcomes[delivery_id] = self.apply_provider_event(
                    event, allow_negative=False, delivery_id=delivery_id
                )
                continue
            entry = decide(event, WalletView(False, True, points), allow_negative=False).entry
            wallet = self._document_name(WALLETS, event.user_id)
            writes.append(
                _create_write(f"{wallet}/{LEDGER}/{event.entry_id}", {**entry, "deliveryId": delivery_id})
            )
            writes.append(_increment_write(wallet, event.amount, version))
            planned.append((event, delivery_id, points))
        if not planned:
            return
        try:
            results = self._commit_writes(writes)
        except (gexc.AlreadyExists, gexc.FailedPrecondition, gexc.NotFound):
            for event, _, _ in planned:
                known.pop(event.user_id, None)  # read again: someone else may have moved it
            if len(planned) == 1:
                event, delivery_id, _ = planned[0]
                outcomes[delivery_id] = self.apply_provider_event(
                    event, allow_negative=False, delivery_id=delivery_id
                )
                return
            half = len(planned) // 2
            self._commit_payments([(e, d) for e, d, _ in planned[:half]], outcomes, known)
            self._commit_payments([(e, d) for e, d, _ in planned[half:]], outcomes, known)
            return
        for n, (event, delivery_id, points) in enumerate(planned):
            known[event.user_id] = (points + event.amount, results[2 * n + 1].update_time)
            outcomes[delivery_id] = EventOutcome(
                "applied", points_before=points, points_after=points + event.amount
            )

    def _document_name(self, collection: str, doc_id: str) -> str:
        return f"{self.client._database_string}/documents/{collection}/{doc_id}"

    def _wallet_versions(self, uids: list[str]) -> dict[str, tuple[Any, Any]]:
        """(raw points, update time) of each existing wallet among `uids`, in one
        batched read decoded straight from the protobuf responses."""
        client = self.client
        request = firestore_pb.BatchGetDocumentsRequest(
            database=client._database_string,
            documents=[self._document_name(WALLETS, uid) for uid in uids],
            mask=common_pb.DocumentMask(field_paths=["points"]),
        )
        found = {}
        for response in client._firestore_api.batch_get_documents(
            request=request, metadata=client._rpc_metadata, retry=self.retry, timeout=self.call_timeout
        ):
            raw = response._pb
            if raw.HasField("found"):
                points = raw.found.fields.get("points")
                found[raw.found.name.rsplit("/", 1)[1]] = (
                    MISSING if points is None else self._decode(points),
                    raw.found.update_time,
                )
        return found

    def _commit_writes(self, writes: list) -> list:
        """Commit raw protobuf writes atomically; the raw WriteResults, one per write."""
        client = self.client
        request = firestore_pb.CommitRequest.wrap(
            firestore_pb.CommitRequest.pb()(database=client._database_string, writes=writes)
        )
        response = client._firestore_api.commit(
            request=request, metadata=client._rpc_metadata, retry=self.retry, timeout=self.call_timeout
        )
        return list(response._pb.write_results)

    def entries_exist(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], bool]:
        """Whether each (uid, entry id) is in that wallet's ledger, in batched reads."""
        found = dict.fromkeys(keys, False)
        for start in range(0, len(keys), _BATCH_LIMIT):
            refs = [
                self._wallet(uid).collection(LEDGER).document(entry)
                for uid, entry in keys[start : start + _BATCH_LIMIT]
            ]
            for snap in self.client.get_all(refs, retry=self.retry, timeout=self.call_timeout):
                if snap.exists:
                    found[(snap.reference.parent.parent.id, snap.id)] = True
        return found

    def event_view(self, event):
        """What backfill.rules.decide needs about an event's wallet, read now (dry runs)."""
        return self._event_view(event, transaction=None)

    def _event_view(self, event, *, transaction):
        from backfill.rules import WalletView

        wallet = self._wallet(event.user_id)
        ledger = wallet.collection(LEDGER)
        read = {"transaction": transaction} if transaction is not None else {"retry": self.retry}
        entry_snap = ledger.document(event.entry_id).get(**read)
        entry_exists = entry_snap.exists
        entry_delivery_id = (entry_snap.to_dict() or {}).get("deliveryId") if entry_exists else None
        snap = wallet.get(**read)
        points = _field(snap.to_dict(), "points") if snap.exists else MISSING
        original_amount, reversed_before = None, 0
        if event.amount < 0 and not entry_exists:
            original = ledger.document(event.original_entry_id).get(**read)
            if original.exists:
                original_amount = original.to_dict().get("amount", 0)
                earlier = ledger.where(filter=FieldFilter("reverses", "==", event.original_entry_id)).get(
                    **read
                )
                reversed_before = sum(doc.to_dict().get("amount", 0) for doc in earlier)
        return WalletView(
            entry_exists, snap.exists, points, original_amount, reversed_before, entry_delivery_id
        )

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

    # -- data migrations ---------------------------------------------------

    def put_migration(self, migration_id: str, data: dict[str, Any]) -> None:
        self.client.collection(MIGRATIONS).document(migration_id).set(
            data, retry=self.retry, timeout=self.call_timeout
        )

    # -- config ------------------------------------------------------------

    def put_config(self, name: str, data: dict[str, Any]) -> None:
        self.client.collection(CONFIG).document(name).set(data, retry=self.retry, timeout=self.call_timeout)

    def ping(self, timeout: float = 3.0) -> None:
        """One quick read, no retries: raises unless Firestore answers (readiness probes)."""
        self.client.collection(CONFIG).document("adjustments").get(retry=None, timeout=timeout)

    def get_config(self, name: str) -> dict[str, Any] | None:
        snap = self.client.collection(CONFIG).document(name).get(retry=self.retry, timeout=self.call_timeout)
        return snap.to_dict() if snap.exists else None


_Query = query_pb.StructuredQuery.pb()
_Aggregation = query_pb.StructuredAggregationQuery.Aggregation.pb()
_AggregationRequest = firestore_pb.RunAggregationQueryRequest.pb()
# sum(amount) as total, count() as count, over a `ledger` collection.
_LEDGER_TOTALS = query_pb.StructuredAggregationQuery.pb()(
    structured_query=_Query(from_=[_Query.CollectionSelector(collection_id=LEDGER)]),
    aggregations=[
        _Aggregation(alias="total", sum=_Aggregation.Sum(field=_Query.FieldReference(field_path="amount"))),
        _Aggregation(alias="count", count=_Aggregation.Count()),
    ],
)
_Write = write_pb.Write.pb()
_Document = document_pb.Document.pb()
_Value = document_pb.Value.pb()
_Precondition = common_pb.Precondition.pb()
_FieldTransform = write_pb.DocumentTransform.FieldTransform.pb()
_DocumentMask = common_pb.DocumentMask.pb()


def _raw_value(value: Any):
    """A Python value as a raw protobuf Value (the common types directly, the rest
    through the client's own encoder)."""
    if value is None:
        return _Value(null_value=0)
    if value is True or value is False:
        return _Value(boolean_value=value)
    if type(value) is int:
        return _Value(integer_value=value)
    if type(value) is str:
        return _Value(string_value=value)
    return _helpers.encode_value(value)._pb


def _create_write(name: str, fields: dict[str, Any]):
    """A write that creates the document and fails if it exists (as batch.create)."""
    return _Write(
        update=_Document(name=name, fields={key: _raw_value(v) for key, v in fields.items()}),
        current_document=_Precondition(exists=False),
    )


def _increment_write(name: str, amount: int, update_time):
    """points += amount and updatedAt := server time, only if the document's
    update time is still `update_time` (as batch.update with those transforms)."""
    return _Write(
        update=_Document(name=name),
        update_mask=_DocumentMask(),
        update_transforms=[
            _FieldTransform(field_path="points", increment=_Value(integer_value=amount)),
            _FieldTransform(field_path="updatedAt", set_to_server_value=_FieldTransform.REQUEST_TIME),
        ],
        current_document=_Precondition(update_time=update_time),
    )


def _bind_begin_transaction(transport, wrap_method, retry, timeout: float) -> None:
    """Make BeginTransaction follow the gateway's retry policy and deadline.

    The library's @transactional begins a transaction without passing a retry,
    so it would fall back on the generated client's default (60 s of retries,
    whatever FIRESTORE_RETRY_DEADLINE says).
    """
    transport._wrapped_methods[transport.begin_transaction] = wrap_method(
        transport.begin_transaction, default_retry=retry, default_timeout=timeout
    )


def _real_error(exc: ValueError) -> BaseException:
    """When BeginTransaction itself fails, google-cloud-firestore tries to roll
    back a transaction that never began and raises "The transaction has no
    transaction ID, so it cannot be rolled back" in place of the real error;
    that error is the ValueError's context."""
    if isinstance(exc.__context__, gexc.GoogleAPIError):
        return exc.__context__
    return exc


def _unmasked(transactional, transaction):
    try:
        return transactional(transaction)
    except ValueError as exc:
        raise _real_error(exc) from None


def _field(data: dict[str, Any] | None, name: str) -> Any:
    if not data or name not in data:
        return MISSING
    return data[name]


def _totals(rows) -> LedgerTotals:
    values = {result.alias: result.value for row in rows for result in row}
    return _ledger_totals(values.get("total"), values.get("count"))


def _ledger_totals(total: Any, count: Any) -> LedgerTotals:
    """The sum and count aggregations of a ledger, as the server sent them."""
    count = int(count or 0)
    # An empty ledger's balance is the integer zero, whatever the server sent
    # (null, or a double 0.0 from some emulators).
    total = total if count else 0
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
