"""Reads: wallets, ledger totals, ledger entries, reports and config."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from typing import Any

from google.api_core import retry as gretry
from google.cloud.firestore_v1.async_transaction import async_transactional
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.types import common as common_pb
from google.cloud.firestore_v1.types import document as document_pb
from google.cloud.firestore_v1.types import firestore as firestore_pb
from google.cloud.firestore_v1.types import query as query_pb

from revassure.firestore.client import (
    BACKOFF_INITIAL,
    BACKOFF_MAX,
    BACKOFF_MULTIPLIER,
    Connection,
    real_error,
)
from revassure.firestore.encoding import LEDGER_TOTALS, AggregationRequest
from revassure.firestore.model import (
    CONFIG,
    LEDGER,
    MISSING,
    REPORTS,
    TRANSIENT_ERRORS,
    WALLETS,
    LedgerTotals,
    WalletState,
    field_value,
    ledger_totals,
    totals_of_rows,
)

BATCH_LIMIT = 500  # documents in one batched read, writes in one atomic commit


class Reads(Connection):
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
        sleeps = gretry.exponential_sleep_generator(BACKOFF_INITIAL, BACKOFF_MAX, BACKOFF_MULTIPLIER)
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
        request = AggregationRequest(
            parent=f"{client._database_string}/documents/{WALLETS}/{uid}",
            structured_aggregation_query=LEDGER_TOTALS,
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
        return ledger_totals(*(self._decode(fields[n]) if n in fields else None for n in ("total", "count")))

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
            points = field_value(snap.to_dict(), "points") if snap.exists else MISSING
            return WalletState(exists=snap.exists, points=points, ledger=totals_of_rows(rows))

        try:
            return await read(self._async_client.transaction(read_only=True))
        except ValueError as exc:
            raise real_error(exc) from None

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
        for start in range(0, len(keys), BATCH_LIMIT):
            refs = [
                self._wallet(uid).collection(LEDGER).document(entry)
                for uid, entry in keys[start : start + BATCH_LIMIT]
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
        points = field_value(snap.to_dict(), "points") if snap.exists else MISSING
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

    # -- reports and config --------------------------------------------------

    def get_report(self, run_id: str) -> dict[str, Any] | None:
        snap = (
            self.client.collection(REPORTS).document(run_id).get(retry=self.retry, timeout=self.call_timeout)
        )
        return snap.to_dict() if snap.exists else None

    def stream_reports(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for snap in self.client.collection(REPORTS).stream(retry=self.retry):
            yield snap.id, snap.to_dict()

    def ping(self, timeout: float = 3.0) -> None:
        """One quick read, no retries: raises unless Firestore answers (readiness probes)."""
        self.client.collection(CONFIG).document("adjustments").get(retry=None, timeout=timeout)

    def get_config(self, name: str) -> dict[str, Any] | None:
        snap = self.client.collection(CONFIG).document(name).get(retry=self.retry, timeout=self.call_timeout)
        return snap.to_dict() if snap.exists else None
