"""Restores: writing a snapshot's documents back, and what a restore asks
first (every path under the collections a snapshot covers, to remove with
--replace; whether the target holds any document). The snapshots app's
restore (snapshots/restore.py) calls them through the gateway; reading a
snapshot out is snapshots.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from google.cloud.firestore_v1.types import firestore as firestore_pb

from revassure.firestore import encoding
from revassure.firestore.client import Connection
from revassure.firestore.model import IDENTITIES, IDENTITY_ENTRIES
from revassure.firestore.reads import BATCH_LIMIT
from revassure.firestore.snapshot_values import SnapshotDocument
from revassure.firestore.snapshots import IDENTITY_SHARDS, ROOTS, SUBCOLLECTIONS, Snapshots, collection_query
from revassure.firestore.transactions import Transactions


class Restores:
    def __init__(self, connection: Connection, transactions: Transactions, snapshots: Snapshots):
        self.connection, self.transactions, self.snapshots = connection, transactions, snapshots

    def write_documents(self, documents: Iterable[SnapshotDocument]) -> int:
        """Write each document as it is (same path, same fields, same types; a set,
        so writing one again changes nothing), BATCH_LIMIT to a commit."""
        return self.commit_batched(
            encoding.Write(update=self.snapshots.raw_document(document)) for document in documents
        )

    def delete_documents(self, paths: Iterable[str]) -> int:
        """Delete the documents at these relative paths, BATCH_LIMIT to a commit."""
        return self.commit_batched(
            encoding.Write(delete=f"{self.connection.documents}/{path}") for path in paths
        )

    def commit_batched(self, writes: Iterable[encoding.Write]) -> int:
        """Commit the writes in order, BATCH_LIMIT to a commit; how many."""
        batch, committed = [], 0
        for write in writes:
            batch.append(write)
            if len(batch) == BATCH_LIMIT:
                self.transactions.commit(batch)
                committed, batch = committed + len(batch), []
        if batch:
            self.transactions.commit(batch)
        return committed + len(batch)

    def snapshot_paths(self, *, concurrency: int = 32) -> Iterator[str]:
        """The path of every document under the collections a snapshot covers
        (what a restore with --replace removes first): each root collection's
        documents and the documents of their SUBCOLLECTIONS, including those
        under a parent that does not exist (a wallet deleted with its ledger
        left behind), which ListDocuments lists with `show_missing`; and every
        identity marker of every shard."""
        for root in ROOTS:
            if root == IDENTITIES:
                for shard in IDENTITY_SHARDS:
                    parent = f"{self.connection.documents}/{IDENTITIES}/{shard}"
                    yield from (
                        self._relative(d.name)
                        for d in self.snapshots.stream_documents(parent, IDENTITY_ENTRIES)
                    )
                continue
            subcollections = SUBCOLLECTIONS.get(root, ())
            for page in self._listed(self.connection.documents, root, show_missing=bool(subcollections)):
                yield from (self._relative(name) for name, exists in page if exists)
                names = [name for name, _ in page]
                for sub in subcollections:
                    children = self.connection.submit(
                        self.snapshots.children(names, sub, concurrency)
                    ).result()
                    for name in names:
                        yield from (self._relative(child.name) for child in children[name])

    def _relative(self, name: str) -> str:
        return name[len(self.connection.documents) + 1 :]

    def _listed(
        self, parent: str, collection_id: str, *, show_missing: bool
    ) -> Iterator[list[tuple[str, bool]]]:
        """Pages of (document name, whether it exists) of parent/collection_id, each
        page one ListDocuments call under the gateway's retry."""
        token = ""
        while True:
            request = firestore_pb.ListDocumentsRequest.wrap(
                encoding.listing_request(parent, collection_id, token, show_missing=show_missing)
            )

            def page(request=request):
                pager = self.connection.api.list_documents(
                    request=request,
                    retry=None,
                    timeout=self.connection.call_timeout,
                    metadata=self.connection.metadata,
                )
                for response in pager.pages:  # this call's page only
                    return firestore_pb.ListDocumentsResponse.pb(response)

            response = self.connection.retry(page)()
            # A document that does not exist is listed by name alone, without a create time.
            yield [(document.name, document.HasField("create_time")) for document in response.documents]
            token = response.next_page_token
            if not token:
                return

    def holds_documents(self) -> bool:
        """Whether any root collection (or identity shard) holds a document."""
        parents = [(self.connection.documents, root) for root in ROOTS if root != IDENTITIES]
        parents += [
            (f"{self.connection.documents}/{IDENTITIES}/{shard}", IDENTITY_ENTRIES)
            for shard in IDENTITY_SHARDS
        ]

        def any_in(parent: str, collection_id: str) -> bool:
            request = firestore_pb.RunQueryRequest.wrap(
                encoding.RunQueryRequest(
                    parent=parent, structured_query=collection_query(collection_id, limit=1)
                )
            )

            def ask() -> bool:
                responses = self.connection.api.run_query(
                    request=request,
                    retry=None,
                    timeout=self.connection.call_timeout,
                    metadata=self.connection.metadata,
                )
                return any(firestore_pb.RunQueryResponse.pb(r).HasField("document") for r in responses)

            return self.connection.retry(ask)()

        return any(any_in(parent, collection_id) for parent, collection_id in parents)
