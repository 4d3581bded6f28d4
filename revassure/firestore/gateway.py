"""The gateway: one connection, and the parts that use it.

`FirestoreGateway` holds a `Connection` (client.py: the clients, the event
loop, the retry policy) and one object per capability, each given that
connection and the parts it builds on:

    reads          Reads(connection)
    entry reads    EntryReads(connection, reads)
    report reads   ReportReads(connection)
    transactions   Transactions(connection, reads)
    writes         Writes(connection, reads, transactions)
    snapshots      Snapshots(connection, reads)
    restores       Restores(connection, transactions, snapshots)
    managed export ManagedExports(connection)
    read times     ReadTimes(connection, reads, transactions, snapshots)
    listening      Listening(connection)

Its public methods are theirs, delegated one by one, and nothing else: the
connection and the parts are its own, so no caller reaches a raw client. Each
public operation raises the gateway's own errors (errors.py), never
google-api-core's: the parts call each other directly, so the library's errors
reach the gateway's methods, which translate them, and the parts' own retries
still see them.
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
from collections.abc import Coroutine, Iterable, Iterator
from concurrent.futures import Future
from datetime import datetime
from typing import Any

from google.api_core import exceptions as gexc

from revassure.firestore.client import Connection
from revassure.firestore.encoding import Document
from revassure.firestore.entry_reads import EntryReads
from revassure.firestore.errors import translated
from revassure.firestore.listen import Listener, Listening, OnWrites
from revassure.firestore.managed_export import ManagedExport, ManagedExports
from revassure.firestore.model import (
    BalanceChange,
    ChangeOutcome,
    Decide,
    EventOutcome,
    ProviderEventFacts,
    WalletState,
    WalletView,
)
from revassure.firestore.reads import Reads
from revassure.firestore.readtime import ReadTimes, ReadTimeSupport
from revassure.firestore.report_reads import ReportReads
from revassure.firestore.restores import Restores
from revassure.firestore.snapshot_values import SnapshotDocument
from revassure.firestore.snapshots import Position, Snapshots
from revassure.firestore.transactions import Transactions
from revassure.firestore.writes import Writes


class FirestoreGateway:
    """Everything revassure asks of Firestore (see the parts' modules for each)."""

    def __init__(self, project: str, *, retry_deadline: float = 60.0, call_timeout: float = 30.0):
        connection = Connection(project, retry_deadline=retry_deadline, call_timeout=call_timeout)
        self.project, self.database, self.documents = project, connection.database, connection.documents
        self._connection = connection
        self._reads = Reads(connection)
        self._entry_reads = EntryReads(connection, self._reads)
        self._report_reads = ReportReads(connection)
        self._transactions = Transactions(connection, self._reads)
        self._writes = Writes(connection, self._reads, self._transactions)
        self._snapshots = Snapshots(connection, self._reads)
        self._restores = Restores(connection, self._transactions, self._snapshots)
        self._managed_exports = ManagedExports(connection)
        self._read_times = ReadTimes(connection, self._reads, self._transactions, self._snapshots)
        self._listening = Listening(connection)

    # -- reads.py ---------------------------------------------------------------

    def stream_wallets(self, *, read_time: dt.datetime | None = None) -> Iterator[tuple[str, Any]]:
        yield from self._reads.stream_wallets(read_time=read_time)

    def get_wallet_points(
        self, uids: Iterable[str], *, read_time: dt.datetime | None = None
    ) -> dict[str, tuple[bool, Any]]:
        return self._reads.get_wallet_points(uids, read_time=read_time)

    def start_aggregation(
        self, uids: list[str], *, concurrency: int, read_time: dt.datetime | None = None
    ) -> Future:
        return self._reads.start_aggregation(uids, concurrency=concurrency, read_time=read_time)

    def ledgers(self, uids: list[str], *, concurrency: int) -> dict[str, list[tuple[str, dict[str, Any]]]]:
        return self._reads.ledgers(uids, concurrency=concurrency)

    def event_view(self, event: ProviderEventFacts) -> WalletView:
        return self._reads.event_view(event)

    # -- entry_reads.py -----------------------------------------------------------

    def entries_exist(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], bool]:
        return self._entry_reads.entries_exist(keys)

    def ledger_entry_amounts(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], Any]:
        return self._entry_reads.ledger_entry_amounts(keys)

    def identity_owners(self, entry_ids: list[str]) -> dict[str, Any]:
        return self._entry_reads.identity_owners(entry_ids)

    def credits_between(self, start: datetime, end: datetime) -> Iterator[tuple[str, str, dict[str, Any]]]:
        yield from self._entry_reads.credits_between(start, end)

    # -- report_reads.py ----------------------------------------------------------

    def get_report(self, run_id: str) -> dict[str, Any] | None:
        return self._report_reads.get_report(run_id)

    def stream_reports(self) -> Iterator[tuple[str, dict[str, Any]]]:
        yield from self._report_reads.stream_reports()

    def stream_settlement_reports(self) -> Iterator[tuple[str, dict[str, Any]]]:
        yield from self._report_reads.stream_settlement_reports()

    def stream_report_violations(self, run_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
        yield from self._report_reads.stream_report_violations(run_id)

    def stream_settlement_report_rows(self, run_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
        yield from self._report_reads.stream_settlement_report_rows(run_id)

    def ping(self, timeout: float = 3.0) -> None:
        return self._report_reads.ping(timeout)

    def get_config(self, name: str) -> dict[str, Any] | None:
        return self._report_reads.get_config(name)

    # -- transactions.py --------------------------------------------------------

    def read_wallets_and_ledgers(self, uids: list[str], *, concurrency: int) -> dict[str, WalletState]:
        return self._transactions.read_wallets_and_ledgers(uids, concurrency=concurrency)

    # -- writes.py --------------------------------------------------------------

    def apply_balance_change(self, change: BalanceChange) -> ChangeOutcome:
        return self._writes.apply_balance_change(change)

    def balance_change_applied(self, change: BalanceChange) -> bool:
        return self._writes.balance_change_applied(change)

    def apply_provider_event(
        self,
        event: ProviderEventFacts,
        *,
        decide: Decide,
        allow_negative: bool,
        delivery_id: int | None = None,
    ) -> EventOutcome:
        return self._writes.apply_provider_event(
            event, decide=decide, allow_negative=allow_negative, delivery_id=delivery_id
        )

    def apply_payments(
        self,
        items: list[tuple[Any, int]],
        *,
        decide: Decide,
        known: dict[str, tuple[int, Any]] | None = None,
        outcomes: dict[int, EventOutcome] | None = None,
    ) -> dict[int, EventOutcome]:
        return self._writes.apply_payments(items, decide=decide, known=known, outcomes=outcomes)

    def write_wallets(self, wallets: Iterable[tuple[str, Any, dict[str, dict[str, Any]]]]) -> int:
        return self._writes.write_wallets(wallets)

    def append_entry(self, uid: str, entry_id: str, fields: dict[str, Any]) -> None:
        return self._writes.append_entry(uid, entry_id, fields)

    def put_report(self, run_id: str, report: dict[str, Any], violations: Iterable[dict[str, Any]]) -> None:
        return self._writes.put_report(run_id, report, violations)

    def put_settlement_report(
        self, run_id: str, report: dict[str, Any], rows: Iterable[tuple[str, dict[str, Any]]]
    ) -> None:
        return self._writes.put_settlement_report(run_id, report, rows)

    def put_migration(self, migration_id: str, data: dict[str, Any]) -> None:
        return self._writes.put_migration(migration_id, data)

    def put_config(self, name: str, data: dict[str, Any]) -> None:
        return self._writes.put_config(name, data)

    # -- snapshots.py -----------------------------------------------------------

    def snapshot_read_time(self) -> datetime:
        return self._snapshots.snapshot_read_time()

    def count_wallets(self) -> int:
        return self._snapshots.count_wallets()

    def snapshot_wallets(
        self,
        *,
        read_time: datetime | None = None,
        start: Position | None = None,
        batch: int = 200,
        concurrency: int = 32,
    ) -> Iterator[tuple[SnapshotDocument, list[SnapshotDocument]]]:
        yield from self._snapshots.snapshot_wallets(
            read_time=read_time, start=start, batch=batch, concurrency=concurrency
        )

    def snapshot_collection(
        self, root: str, *, read_time: datetime | None = None
    ) -> Iterator[SnapshotDocument]:
        yield from self._snapshots.snapshot_collection(root, read_time=read_time)

    def stream_documents(
        self,
        parent: str,
        collection_id: str,
        *,
        read_time: datetime | None = None,
        start: Position | None = None,
    ) -> Iterator[Document]:
        yield from self._snapshots.stream_documents(parent, collection_id, read_time=read_time, start=start)

    def snapshot_document(self, document: Document) -> SnapshotDocument:
        return self._snapshots.snapshot_document(document)

    def raw_document(self, document: SnapshotDocument) -> Document:
        return self._snapshots.raw_document(document)

    # -- restores.py -------------------------------------------------------------

    def write_documents(self, documents: Iterable[SnapshotDocument]) -> int:
        return self._restores.write_documents(documents)

    def delete_documents(self, paths: Iterable[str]) -> int:
        return self._restores.delete_documents(paths)

    def snapshot_paths(self, *, concurrency: int = 32) -> Iterator[str]:
        yield from self._restores.snapshot_paths(concurrency=concurrency)

    def holds_documents(self) -> bool:
        return self._restores.holds_documents()

    # -- managed_export.py --------------------------------------------------------

    def start_managed_export(self, bucket: str, *, snapshot_time: datetime | None = None) -> ManagedExport:
        return self._managed_exports.start_managed_export(bucket, snapshot_time=snapshot_time)

    def managed_export_state(self, operation: str) -> str:
        return self._managed_exports.managed_export_state(operation)

    # -- readtime.py ------------------------------------------------------------

    def server_time(self) -> datetime:
        return self._read_times.server_time()

    def read_time_support(self) -> ReadTimeSupport:
        return self._read_times.read_time_support()

    # -- listen.py --------------------------------------------------------------

    def listen_writes(self, callback: OnWrites, *, since: datetime | None = None) -> Listener:
        return self._listening.listen_writes(callback, since=since)

    # -- client.py --------------------------------------------------------------

    def submit(self, coro: Coroutine) -> Future:
        return self._connection.submit(coro)

    def document(self, collection: str, doc_id: str) -> str:
        return self._connection.document(collection, doc_id)

    def connect(self) -> None:
        return self._connection.connect()

    def close(self) -> None:
        return self._connection.close()


def _translating(operation):
    """`operation`, raising the gateway's own error for a google-api-core one."""
    if inspect.isgeneratorfunction(operation):

        @functools.wraps(operation)
        def generator(*args, **kwargs):
            try:
                yield from operation(*args, **kwargs)
            except gexc.GoogleAPIError as exc:
                raise translated(exc) from exc

        return generator

    @functools.wraps(operation)
    def call(*args, **kwargs):
        try:
            return operation(*args, **kwargs)
        except gexc.GoogleAPIError as exc:
            raise translated(exc) from exc

    return call


def public_operations(cls: type = FirestoreGateway) -> list[str]:
    """The names of the gateway's public operations (methods, not properties)."""
    return sorted(
        name
        for name, member in inspect.getmembers(cls)
        if not name.startswith("_") and inspect.isfunction(member)
    )


for _name in public_operations():
    setattr(FirestoreGateway, _name, _translating(getattr(FirestoreGateway, _name)))
