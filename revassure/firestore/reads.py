"""Reads: wallets, ledger totals and entries, what an event's wallet looks like
(entries by key and credits in a period: entry_reads.py; the mirrored reports
and config: report_reads.py).

The raw reads here (`get`, `ledger_totals`, `where_equal`) also serve the
transactions, given a transaction id. Each call runs whole under the gateway's
retry (a stream is retried from its start, never half-read), with
`retry=None` to the generated client so its own 60-300 s default never runs
underneath.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from typing import Any

from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.cloud.firestore_v1.types import firestore as firestore_pb

from revassure.firestore import encoding
from revassure.firestore.client import Connection, MeasuredAsync
from revassure.firestore.encoding import Document, Timestamp
from revassure.firestore.errors import translated
from revassure.firestore.model import (
    IDENTITIES,
    LEDGER,
    MISSING,
    WALLETS,
    LedgerTotals,
    ProviderEventFacts,
    WalletView,
    identity_path,
)

BATCH_LIMIT = 500  # documents in one batched read, writes in one atomic commit


class Reads:
    """The gateway's reads, over its connection; the raw ones (`get`,
    `ledger_totals`, `where_equal`, `aggregate_many`, `documents_of`) also
    serve the other parts, in a transaction when given its id."""

    def __init__(self, connection: Connection):
        self.connection = connection

    # -- wallets ---------------------------------------------------------------

    def stream_wallets(self, *, read_time: dt.datetime | None = None) -> Iterator[tuple[str, Any]]:
        """Yield (uid, raw points) for every wallet, in document-name order, a page
        of WALLETS_PAGE at a time; every page as of `read_time` when given (see
        read_time_support: a backend may not honour it).

        Each page is one ListDocuments call, which answers with the whole page
        in one message, run under the gateway's retry: a transient error repeats
        a page, never the listing, and no call outlives FIRESTORE_CALL_TIMEOUT
        however many wallets there are. Pages are fetched on the gateway's event
        loop, the next while the caller goes through the last; a query would
        stream one message per wallet, each waiting its turn on a loop (or for
        the interpreter lock, in a thread) busy with a run's aggregations.
        Documents are decoded from the raw response rather than through
        DocumentSnapshots: a tenth of the CPU per wallet.
        """
        at = encoding.read_timestamp(read_time)
        next_page = self.connection.submit(self._wallet_page("", at))
        while True:
            page, token = next_page.result()
            if token:
                next_page = self.connection.submit(self._wallet_page(token, at))
            for document in page:
                yield document.name.rsplit("/", 1)[1], points_of(document)
            if not token:
                return

    async def _wallet_page(self, token: str, read_time=None) -> tuple[list, str]:
        """The raw wallet Documents of the page at `token` ("" for the first), and
        the next page's token ("" after the last page)."""
        request = firestore_pb.ListDocumentsRequest.wrap(
            encoding.wallets_request(self.connection.documents, token, read_time)
        )

        async def call():
            pager = await self.connection.async_api.list_documents(
                request=request,
                retry=None,
                timeout=self.connection.call_timeout,
                metadata=self.connection.metadata,
            )
            async for response in pager.pages:  # the page of this call only
                return firestore_pb.ListDocumentsResponse.pb(response)

        response = await self.connection.async_retry(call)()
        return list(response.documents), response.next_page_token

    def get_wallet_points(
        self, uids: Iterable[str], *, read_time: dt.datetime | None = None
    ) -> dict[str, tuple[bool, Any]]:
        """(exists, raw points) of each given wallet, in one batched read (as of
        `read_time` when given)."""
        uids = list(uids)
        found = self.wallet_versions(uids, read_time=read_time)
        return {uid: (True, found[uid][0]) if uid in found else (False, MISSING) for uid in uids}

    def wallet_versions(
        self, uids: list[str], *, read_time: dt.datetime | None = None
    ) -> dict[str, tuple[Any, Any]]:
        """(raw points, update time) of each existing wallet among `uids` (as of `read_time`)."""
        names = [self.connection.document(WALLETS, uid) for uid in uids]
        found = self.get(names, mask=("points",), read_time=encoding.read_timestamp(read_time))
        return {
            name.rsplit("/", 1)[1]: (points_of(document), document.update_time)
            for name, document in found.items()
        }

    # -- ledgers ---------------------------------------------------------------

    def start_aggregation(
        self, uids: list[str], *, concurrency: int, read_time: dt.datetime | None = None
    ) -> Future:
        """sum(amount) and count() of each wallet's ledger, `concurrency` queries at
        a time, without waiting: a Future of {uid: LedgerTotals}, as of `read_time`
        when given.

        Calls in flight together share one limit of `concurrency` queries, so a
        caller can queue the next batch while it handles the last one and keep
        Firestore busy without ever exceeding the limit.
        """
        return self.connection.submit(
            _translating(self.aggregate_many(uids, concurrency, read_time=encoding.read_timestamp(read_time)))
        )

    async def aggregate_many(
        self,
        uids: list[str],
        concurrency: int,
        transaction: bytes | None = None,
        *,
        read_time: Timestamp | None = None,
    ) -> dict[str, LedgerTotals]:
        if transaction is None:
            gates = self.connection.gates
            gate = gates.setdefault(concurrency, asyncio.Semaphore(concurrency))
            retry = self.connection.async_retry
        else:
            # A transaction's reads wait behind no one else's: it must stay short.
            gate, retry = asyncio.Semaphore(concurrency), self.connection.async_retry_in_transaction
        api = self.connection.async_api

        async def one(uid: str) -> tuple[str, LedgerTotals]:
            async with gate:
                return uid, await retry(self._aggregate)(api, uid, transaction, read_time)

        return dict(await asyncio.gather(*(one(uid) for uid in uids)))

    async def _aggregate(
        self, api, uid: str, transaction: bytes | None = None, read_time=None
    ) -> LedgerTotals:
        """One aggregation query, from a prebuilt template (only the parent
        differs between wallets): the query `collection.sum().count().get()`
        sends, for half the client's CPU, which bounds a run once Firestore
        keeps up."""
        request = firestore_pb.RunAggregationQueryRequest.wrap(
            encoding.ledger_totals_request(self.connection.document(WALLETS, uid), transaction, read_time)
        )
        responses = await api.run_aggregation_query(
            request=request,
            retry=None,
            timeout=self.connection.call_timeout,
            metadata=self.connection.metadata,
        )
        result = None
        async for response in responses:
            raw = firestore_pb.RunAggregationQueryResponse.pb(response)
            if raw.HasField("result"):
                result = raw.result
        return encoding.decode_totals(result)

    def ledger_totals(self, uid: str, *, transaction: bytes | None = None) -> LedgerTotals:
        """The same aggregation, synchronously, in a transaction when given one."""
        request = firestore_pb.RunAggregationQueryRequest.wrap(
            encoding.ledger_totals_request(self.connection.document(WALLETS, uid), transaction)
        )

        def run() -> LedgerTotals:
            result = None
            for response in self.connection.api.run_aggregation_query(
                request=request,
                retry=None,
                timeout=self.connection.call_timeout,
                metadata=self.connection.metadata,
            ):
                raw = firestore_pb.RunAggregationQueryResponse.pb(response)
                if raw.HasField("result"):
                    result = raw.result
            return encoding.decode_totals(result)

        return self._retry(transaction)(run)()

    def ledgers(self, uids: list[str], *, concurrency: int) -> dict[str, list[tuple[str, dict[str, Any]]]]:
        """Every ledger entry of each given wallet, as (entry id, fields); for the few
        wallets whose entries must be looked at one by one. Raw queries on the
        gateway's event loop, decoded straight from their responses:
        DocumentSnapshots cost ten times the CPU, and a query streamed in a
        thread of its own waits for the interpreter lock at every entry."""
        return self.connection.submit(self._ledger_entries(uids, concurrency)).result()

    async def _ledger_entries(
        self, uids: list[str], concurrency: int
    ) -> dict[str, list[tuple[str, dict[str, Any]]]]:
        gate = asyncio.Semaphore(concurrency)
        api = self.connection.async_api

        async def ledger(uid: str) -> tuple[str, list[tuple[str, dict[str, Any]]]]:
            async with gate:
                documents = await self.connection.async_retry(self._ledger)(
                    api, self.connection.document(WALLETS, uid)
                )
            return uid, [
                (document.name.rsplit("/", 1)[1], encoding.decode_fields(document.fields))
                for document in documents
            ]

        return dict(await asyncio.gather(*(ledger(uid) for uid in uids)))

    async def _ledger(self, api, wallet: str, read_time=None) -> list:
        """One wallet's ledger (`wallet`: the wallet's document name) as raw
        Documents, whole (a broken stream is read again from its start), as of
        `read_time` when given."""
        return await self.documents_of(api, wallet, LEDGER, read_time)

    async def documents_of(
        self, api: MeasuredAsync, parent: str, collection_id: str, read_time: dt.datetime | None = None
    ) -> list[Document]:
        """Every raw Document of `parent`/`collection_id`, in one query."""
        request = firestore_pb.RunQueryRequest.wrap(
            encoding.collection_request(parent, collection_id, read_time)
        )
        responses = await api.run_query(
            request=request,
            retry=None,
            timeout=self.connection.call_timeout,
            metadata=self.connection.metadata,
        )
        documents = []
        async for response in responses:
            raw = firestore_pb.RunQueryResponse.pb(response)
            if raw.HasField("document"):
                documents.append(raw.document)
        return documents

    # -- what an event's wallet looks like ---------------------------------------

    def event_view(self, event: ProviderEventFacts) -> WalletView:
        """What the business rules need about an event's wallet, read now (dry runs)."""
        return self.event_state(event)[0]

    def event_state(self, event: ProviderEventFacts) -> tuple[WalletView, Any]:
        """What the business rules need about an event's wallet, and the wallet's
        update time (None when there is no wallet), read now without locks.

        One batched read of the event's entry, the wallet, the identity marker
        and (for a reversal) its original; then, for a reversal, the earlier
        reversals of that original. Every write that moves this ledger moves the
        wallet in the same commit, so a commit conditioned on the wallet's
        update time read here is refused if anything the rules saw changed
        after the wallet was read; the reversals are read after it, so they
        include every reversal that wallet's version includes.
        """
        wallet = self.connection.document(WALLETS, event.user_id)
        ledger = f"{wallet}/{LEDGER}"
        names = {
            "entry": f"{ledger}/{event.entry_id}",
            "wallet": wallet,
            "identity": self.connection.document(IDENTITIES, identity_path(event.entry_id)),
        }
        if event.amount < 0:
            names["original"] = f"{ledger}/{event.original_entry_id}"
        found = self.get(list(names.values()))
        entry, snap, identity = (found.get(names[key]) for key in ("entry", "wallet", "identity"))
        original_amount, reversed_before = None, 0
        original = found.get(names["original"]) if event.amount < 0 and entry is None else None
        if original is not None:
            original_amount = field(original, "amount", 0)
            earlier = self.where_equal(wallet, LEDGER, "reverses", event.original_entry_id)
            reversed_before = sum(fields.get("amount", 0) for fields in earlier)
        view = WalletView(
            entry is not None,
            snap is not None,
            points_of(snap),
            original_amount,
            reversed_before,
            field(entry, "deliveryId", None),
            field(identity, "uid", None),
        )
        return view, None if snap is None else snap.update_time

    # -- raw reads -------------------------------------------------------------

    def get(
        self,
        names: list[str],
        *,
        mask: tuple[str, ...] | None = None,
        transaction: bytes | None = None,
        read_time: Timestamp | None = None,
    ) -> dict[str, Document]:
        """{name: raw Document} of those of the named documents that exist, in one
        batched read; `mask` limits the fields sent; as of `read_time` (a Timestamp) when given."""
        request = encoding.BatchGetDocumentsRequest(database=self.connection.database, documents=names)
        if mask is not None:
            request.mask.SetInParent()
            request.mask.field_paths.extend(mask)
        if transaction is not None:
            request.transaction = transaction
        if read_time is not None:
            request.read_time.CopyFrom(read_time)
        wrapped = firestore_pb.BatchGetDocumentsRequest.wrap(request)

        def read() -> dict[str, Any]:
            found = {}
            for response in self.connection.api.batch_get_documents(
                request=wrapped,
                retry=None,
                timeout=self.connection.call_timeout,
                metadata=self.connection.metadata,
            ):
                raw = firestore_pb.BatchGetDocumentsResponse.pb(response)
                if raw.HasField("found"):
                    found[raw.found.name] = raw.found
            return found

        return self._retry(transaction)(read)()

    def get_one(self, name: str, *, transaction: bytes | None = None) -> Document | None:
        """The raw Document, or None when it does not exist."""
        return self.get([name], transaction=transaction).get(name)

    def where_equal(
        self, parent: str, collection: str, name: str, value: Any, *, transaction: bytes | None = None
    ) -> list[dict[str, Any]]:
        """The fields of each document of parent/collection whose field `name` equals `value`."""
        request = firestore_pb.RunQueryRequest.wrap(
            encoding.where_equal_request(parent, collection, name, value, transaction)
        )

        def run() -> list[dict[str, Any]]:
            found = []
            for response in self.connection.api.run_query(
                request=request,
                retry=None,
                timeout=self.connection.call_timeout,
                metadata=self.connection.metadata,
            ):
                raw = firestore_pb.RunQueryResponse.pb(response)
                if raw.HasField("document"):
                    found.append(encoding.decode_fields(raw.document.fields))
            return found

        return self._retry(transaction)(run)()

    def _retry(self, transaction: bytes | None) -> gretry.Retry:
        return self.connection.retry if transaction is None else self.connection.retry_in_transaction


def field(document: Document | None, name: str, default: Any) -> Any:
    """A field of a raw Document (None for a missing document), decoded."""
    if document is None or name not in document.fields:
        return default
    return encoding.decode(document.fields[name])


def points_of(document: Document | None) -> Any:
    """A wallet's raw points; MISSING when the wallet or the field is absent."""
    return field(document, "points", MISSING)


async def _translating(coroutine):
    """Await `coroutine`, raising the gateway's own error for a library one (a
    Future handed to a caller outside the gateway)."""
    try:
        return await coroutine
    except gexc.GoogleAPIError as exc:
        raise translated(exc) from exc
