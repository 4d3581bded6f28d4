"""Snapshots: every document of the product's collections, read out exactly (the
snapshots app's JSON Lines files; each document's values in snapshot_values.py;
written back by restores.py). Firestore's own managed export is managed_export.py.

What a snapshot covers comes from the gateway's declaration of its collections
(model.COLLECTIONS), since Firestore cannot be asked on the emulator (it
implements neither ListCollectionIds nor collection-group queries): the root
collections in ROOTS, each with the subcollections named in SUBCOLLECTIONS.
`ledgerIdentities` holds no documents of its own, only the `entries` of its
256 shards, so its shards are named rather than queried.

A document travels as a plain dict, `{"path": "wallets/u1/ledger/e1",
"fields": {name: tagged value}}` (snapshot_values.py: each value with its
Firestore type).

Reads name a `read_time` (the server's time when the snapshot began): on
Firestore every query of one snapshot then sees the database as it was at
that moment, however long the snapshot takes (within Firestore's one hour of
versions). The emulator ignores read times: there a snapshot reads a moving
database.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from google.api_core import retry as gretry
from google.cloud.firestore_v1.types import firestore as firestore_pb
from google.cloud.firestore_v1.types import query as query_pb
from google.protobuf.timestamp_pb2 import Timestamp

from revassure.firestore import encoding, snapshot_values
from revassure.firestore.client import BACKOFF, Connection
from revassure.firestore.encoding import Document
from revassure.firestore.model import (
    COLLECTIONS,
    IDENTITIES,
    IDENTITY_ENTRIES,
    LEDGER,
    TRANSIENT_ERRORS,
    WALLETS,
)
from revassure.firestore.reads import Reads
from revassure.firestore.snapshot_values import SnapshotDocument

# From the gateway's one declaration (model.COLLECTIONS): wallets first, ledgerIdentities last.
ROOTS = tuple(c.name for c in COLLECTIONS if c.in_snapshots)
SUBCOLLECTIONS = {c.name: c.subcollections for c in COLLECTIONS if c.in_snapshots and c.subcollections}
# ledgerIdentities/{shard}/entries/{id} (see model.identity_path): the shards are
# never documents themselves, so they are named here.
IDENTITY_SHARDS = tuple(f"{n:02x}" for n in range(256))


class CollectionChanged(Exception):
    """A stream picked up again after a break (or a restart) no longer lines up with
    what was read before: documents were added or removed in between."""


@dataclass(frozen=True)
class Position:
    """How far a stream of one collection got: the first and last documents read
    (full names) and how many. Enough to pick the stream up after them, on a
    server that honours cursors (Firestore) and on one that ignores them but
    keeps its order (the npm emulator)."""

    first: str | None = None
    last: str | None = None
    count: int = 0

    def after(self, name: str) -> Position:
        return Position(self.first or name, name, self.count + 1)


class Snapshots:
    def __init__(self, connection: Connection, reads: Reads):
        self.connection, self.reads = connection, reads

    # -- reading out ---------------------------------------------------------

    def snapshot_read_time(self) -> datetime:
        """The server's present time (from a one-document query's answer): the
        read time of a new snapshot. Taken from the server, so a fast local clock
        can never ask for a time in Firestore's future."""
        request = firestore_pb.RunQueryRequest.wrap(
            encoding.RunQueryRequest(
                parent=self.connection.documents, structured_query=collection_query(WALLETS, limit=1)
            )
        )

        def ask() -> datetime:
            stamp = Timestamp()
            for response in self.connection.api.run_query(
                request=request,
                retry=None,
                timeout=self.connection.call_timeout,
                metadata=self.connection.metadata,
            ):
                raw = firestore_pb.RunQueryResponse.pb(response)
                if raw.HasField("read_time"):
                    stamp.CopyFrom(raw.read_time)
            if not stamp.seconds:  # a server that sends no read time: ours will do
                return datetime.now(UTC)
            # Firestore keeps microseconds: a finer read time names no other version.
            return datetime.fromtimestamp(stamp.seconds, UTC).replace(microsecond=stamp.nanos // 1000)

        return self.connection.retry(ask)()

    def count_wallets(self) -> int:
        """How many wallets there are (one count aggregation): a snapshot's progress bar."""
        query = encoding.AggregationQuery(
            structured_query=collection_query(WALLETS),
            aggregations=[encoding.Aggregation(alias="count", count=encoding.Aggregation.Count())],
        )
        request = firestore_pb.RunAggregationQueryRequest.wrap(
            encoding.RunAggregationQueryRequest(
                parent=self.connection.documents, structured_aggregation_query=query
            )
        )

        def ask() -> int:
            count = 0
            for response in self.connection.api.run_aggregation_query(
                request=request,
                retry=None,
                timeout=self.connection.call_timeout,
                metadata=self.connection.metadata,
            ):
                raw = firestore_pb.RunAggregationQueryResponse.pb(response)
                if raw.HasField("result") and "count" in raw.result.aggregate_fields:
                    count = raw.result.aggregate_fields["count"].integer_value
            return count

        return self.connection.retry(ask)()

    def snapshot_wallets(
        self,
        *,
        read_time: datetime | None = None,
        start: Position | None = None,
        batch: int = 200,
        concurrency: int = 32,
    ) -> Iterator[tuple[SnapshotDocument, list[SnapshotDocument]]]:
        """Yield (wallet, its ledger entries) for every wallet, in the order
        Firestore lists wallets; after the wallets `start` describes (by their
        relative paths: the first and last taken, and how many) when given.

        The ledgers of the next `batch` wallets are read (`concurrency` queries
        at a time) while the caller handles the last batch, so memory holds two
        batches whatever the number of wallets.
        """
        if start is not None:
            start = Position(
                f"{self.connection.documents}/{start.first}",
                f"{self.connection.documents}/{start.last}",
                start.count,
            )
        wallets = self.stream_documents(self.connection.documents, WALLETS, read_time=read_time, start=start)
        pending = None
        while True:
            chunk = [document for _, document in zip(range(batch), wallets, strict=False)]
            queued = None
            if chunk:
                names = [document.name for document in chunk]
                queued = (chunk, self.connection.submit(self._ledgers(names, read_time, concurrency)))
            if pending is not None:
                documents, ledgers = pending[0], pending[1].result()
                for document in documents:
                    yield self.snapshot_document(document), ledgers[document.name]
            if queued is None:
                return
            pending = queued

    async def _ledgers(self, wallets: list[str], read_time, concurrency: int) -> dict[str, list]:
        ledgers = await self.children(wallets, LEDGER, concurrency, read_time)
        return {
            wallet: [self.snapshot_document(d) for d in documents] for wallet, documents in ledgers.items()
        }

    async def children(
        self, parents: list[str], collection_id: str, concurrency: int, read_time=None
    ) -> dict[str, list]:
        """{parent: its raw documents in `collection_id`}, `concurrency` queries at
        a time, each whole (a broken stream is read again from its start)."""
        gates = self.connection.gates
        gate = gates.setdefault(concurrency, asyncio.Semaphore(concurrency))
        api = self.connection.async_api

        async def one(parent: str):
            async with gate:
                return parent, await self.connection.async_retry(self.reads.documents_of)(
                    api, parent, collection_id, read_time
                )

        return dict(await asyncio.gather(*(one(parent) for parent in parents)))

    def snapshot_collection(
        self, root: str, *, read_time: datetime | None = None
    ) -> Iterator[SnapshotDocument]:
        """Every document of a root collection other than wallets, each followed by
        the documents of its subcollections."""
        if root == IDENTITIES:
            for shard in IDENTITY_SHARDS:
                for document in self.stream_documents(
                    f"{self.connection.documents}/{IDENTITIES}/{shard}", IDENTITY_ENTRIES, read_time=read_time
                ):
                    yield self.snapshot_document(document)
            return
        for document in self.stream_documents(self.connection.documents, root, read_time=read_time):
            yield self.snapshot_document(document)
            for sub in SUBCOLLECTIONS.get(root, ()):
                for child in self.stream_documents(document.name, sub, read_time=read_time):
                    yield self.snapshot_document(child)

    def stream_documents(
        self,
        parent: str,
        collection_id: str,
        *,
        read_time: datetime | None = None,
        start: Position | None = None,
    ) -> Iterator[Document]:
        """Yield the raw documents of `parent`/`collection_id` after `start`.

        One query, streamed; a stream broken by a transient error, or ended by
        the call timeout on a long read, is picked up after the last document
        read, with backoff, until the retry deadline passes without progress.
        """
        position = start or Position()
        sleeps: Iterator[float] | None = None
        deadline = 0.0
        while True:
            try:
                for document in self._documents_after(parent, collection_id, read_time, position):
                    position, sleeps = position.after(document.name), None
                    yield document
                return
            except TRANSIENT_ERRORS:
                if sleeps is None:  # the first failure since the last progress
                    sleeps = gretry.exponential_sleep_generator(**BACKOFF)
                    deadline = time.monotonic() + self.connection.retry_deadline
                pause = next(sleeps)
                if time.monotonic() + pause > deadline:
                    raise
                time.sleep(pause)

    def _documents_after(self, parent: str, collection_id: str, read_time, position: Position) -> Iterator:
        request = firestore_pb.RunQueryRequest.wrap(
            _documents_request(parent, collection_id, read_time, position.last)
        )
        responses = (
            firestore_pb.RunQueryResponse.pb(response)
            for response in self.connection.api.run_query(
                request=request,
                retry=None,
                timeout=self.connection.call_timeout,
                metadata=self.connection.metadata,
            )
        )
        documents = (raw.document for raw in responses if raw.HasField("document"))
        if not position.count:
            yield from documents
            return
        first = next(documents, None)
        if first is None:
            return
        if first.name == position.first:
            # The server ignored the cursor and started over in the same order:
            # skip what was read already, checking it is still the same.
            last = first.name
            for _ in range(position.count - 1):
                document = next(documents, None)
                if document is None:
                    break
                last = document.name
            if last != position.last:
                raise CollectionChanged(
                    f"{collection_id} under {parent} changed while it was read: read again from the start"
                )
        elif first.name <= position.last:
            raise CollectionChanged(f"{collection_id} under {parent} came back out of order")
        else:
            yield first
        yield from documents

    # -- the values (snapshot_values.py) -----------------------------------------

    def snapshot_document(self, document: Document) -> SnapshotDocument:
        """A raw Document as a snapshot line's content."""
        return snapshot_values.snapshot_document(document, self.connection.documents)

    def raw_document(self, document: SnapshotDocument) -> Document:
        """A snapshot line's content as the raw Document it was read from
        (ValueError when a value is not one the format writes)."""
        return snapshot_values.raw_document(document, self.connection.documents)


def collection_query(collection_id: str, *, limit: int | None = None):
    query = encoding.Query(from_=[encoding.Query.CollectionSelector(collection_id=collection_id)])
    if limit is not None:
        query.limit.value = limit
    return query


def _documents_request(parent: str, collection_id: str, read_time, after: str | None):
    """Every document of parent/collection_id (in name order on Firestore), after
    the document named `after` when given, as of `read_time` when given."""
    request = encoding.collection_request(parent, collection_id, read_time)
    if after is not None:
        # A cursor holds one value per ordering: name the order by document name it
        # resumes on (Firestore refuses a cursor with more values than the query orders by).
        order = request.structured_query.order_by.add()
        order.field.field_path, order.direction = "__name__", encoding.Query.Direction.ASCENDING
        cursor = query_pb.Cursor.pb()(values=[encoding.Value(reference_value=after)], before=False)
        request.structured_query.start_at.CopyFrom(cursor)
    return request
