"""Listening to the writes of wallets and ledger entries (Firestore's Listen API).

`listen_writes(callback, since=...)` opens two Listen streams through the
generated client (`FirestoreClient.listen`): one on the `wallets` collection,
one on the collection group `ledger`, each in a thread of its own. Each
document change becomes a `Write` (the wallet's uid, the document, its commit
time), handed to `callback(writes, read_time)` from the stream's thread once
per consistent point (Firestore's global snapshot: a NO_CHANGE target change
with a read time), in the order the stream delivers them; `read_time` is that
point: every write committed up to it on that stream has been handed over.

Each stream keeps the commit time of every document it covers (its path and
a time: not the documents). A change is a write when that time is new: a
document created, or written again. So a document sent again unchanged (a
RESET, or Google's emulator, which answers every commit with a RESET and the
target's every document) is not handed over twice, and a RESET's documents
that do not come back were deleted. Consistent points' read times are not
trusted to order commits: Google's emulator stamps a point later than the
listing it closes, and a filter "committed after the last point" lost 62 of
100 concurrent writes there. In the first listing (every document the stream
covers), a document is a write only when committed after `since` (what a
restarted watcher missed; None: none are). A deletion is a write at the next
point's read time (Firestore keeps no time for it).

Why not `on_snapshot` of google-cloud-firestore: its `Watch` keeps every
document a listener covers and, at every snapshot, copies its map of them once
per change and sorts them all with a Python comparator. Our launcher sends a
snapshot per commit, so the watcher spent its core sorting (125 ms a snapshot
with a few thousand ledger entries, bench `--only realtime`) and fell minutes
behind at 100 writes/s. These streams keep a path and a time per document,
and do a dictionary look-up per change.

The first consistent points must arrive within the gateway's retry deadline
(opening a stream retries transient errors, as every call does), or the
listening ends with DeadlineExceeded. A stream that ends or fails later
leaves `Listener.active` False, and the caller listens again from its own
resume point (the watcher, with backoff).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.cloud.firestore_v1.types import firestore as firestore_pb
from google.protobuf.timestamp_pb2 import Timestamp

from revassure.firestore import encoding
from revassure.firestore.client import BACKOFF, Connection
from revassure.firestore.model import CONFIG, LEDGER, TRANSIENT_ERRORS, WALLETS

NO_CHANGE, REMOVE, CURRENT, RESET = (
    firestore_pb.TargetChange.TargetChangeType.NO_CHANGE,
    firestore_pb.TargetChange.TargetChangeType.REMOVE,
    firestore_pb.TargetChange.TargetChangeType.CURRENT,
    firestore_pb.TargetChange.TargetChangeType.RESET,
)
TARGET_ID = 1  # each stream has one target
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Write:
    """One document written: a wallet or one of its ledger entries."""

    uid: str
    document: str  # its path below the database's documents, "wallets/u1/ledger/e1"
    write_time: datetime  # its commit time (a deletion: the consistent point's read time)
    deleted: bool = False


OnWrites = Callable[[list[Write], datetime], None]


def _moment(stamp: Timestamp) -> tuple[int, int]:
    return (stamp.seconds, stamp.nanos)


def _datetime(stamp: Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)


class _Stream:
    """One Listen stream with one target, read in a thread of its own."""

    def __init__(self, listener: Listener, name: str, request):
        self.listener, self.name, self._request = listener, name, request
        self._closed = threading.Event()
        self._call: Any = None  # the Listen call's response iterator, once opened
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=f"firestore-listen-{name}", daemon=True)
        # The commit time of every document the target covers, by path: a change
        # is a write when it is not the version already known.
        self._versions: dict[str, tuple[int, int]] = {}
        self._prefix = len(listener.connection.documents) + 1
        self._delivered = False  # past the first consistent point

    def _requests(self):
        yield firestore_pb.ListenRequest.wrap(self._request)
        self._closed.wait()  # the request stream stays open until stop()

    def _run(self) -> None:
        """Open the stream and read it; until its first consistent point, a
        transient failure opens it again, as every call retries (the gateway's
        backoff and deadline). After that, a failure ends it."""
        connection = self.listener.connection
        deadline = time.monotonic() + connection.retry_deadline
        pauses = gretry.exponential_sleep_generator(**BACKOFF)
        try:
            while not self._closed.is_set():
                try:
                    self._listen(connection)
                    return
                except TRANSIENT_ERRORS as exc:
                    pause = next(pauses)
                    if self._delivered or time.monotonic() + pause > deadline:
                        raise
                    log.info("listen: opening the %s stream failed; trying again", self.name, exc_info=exc)
                    self._closed.wait(pause)
        except BaseException as exc:
            if not self._closed.is_set():
                self.error = exc
        finally:
            self._closed.set()

    def _listen(self, connection: Connection) -> None:
        # A stream lasts until stopped: no deadline, and no retry of the call itself.
        self._call = connection.api.listen(
            requests=self._requests(), retry=None, timeout=None, metadata=connection.metadata
        )
        current, resetting = False, False
        changed: list[tuple[str, Timestamp]] = []
        deleted: list[str] = []
        sent: set[str] = set()  # since a RESET: the documents sent again
        for response in self._call:
            if self._closed.is_set():
                return
            raw = firestore_pb.ListenResponse.pb(response)
            kind = raw.WhichOneof("response_type")
            if kind == "document_change":
                change = raw.document_change
                path = change.document.name[self._prefix :]
                if TARGET_ID in change.target_ids:
                    stamp = change.document.update_time
                    moment, known = _moment(stamp), self._versions.get(path)
                    if resetting:
                        sent.add(path)
                    if moment != known:
                        self._versions[path] = moment
                        if self._is_write(moment):
                            changed.append((path, stamp))
                elif TARGET_ID in change.removed_target_ids and path in self._versions:
                    del self._versions[path]
                    deleted.append(path)
            elif kind in ("document_delete", "document_remove"):
                path = getattr(raw, kind).document[self._prefix :]
                if self._versions.pop(path, None):
                    deleted.append(path)
            elif kind == "target_change":
                target = raw.target_change
                if target.target_change_type == REMOVE:
                    raise gexc.from_grpc_status(target.cause.code, target.cause.message)
                if target.target_change_type == RESET:
                    # Every document follows again; one that does not was deleted.
                    current, resetting, sent = False, True, set()
                if target.target_change_type == CURRENT:
                    current = True
                if target.target_change_type == NO_CHANGE and not target.target_ids and current:
                    if resetting:
                        gone = [path for path in self._versions if path not in sent]
                        for path in gone:
                            del self._versions[path]
                        deleted += gone
                        resetting, sent = False, set()
                    at = _datetime(target.read_time)
                    writes = [_write(path, _datetime(stamp)) for path, stamp in changed]
                    writes += [_write(path, at, deleted=True) for path in deleted]
                    self.listener.deliver(self.name, writes, at)
                    self._delivered = True
                    changed, deleted = [], []

    def _is_write(self, moment: tuple[int, int]) -> bool:
        """A new version is a write, but in the first listing (every document the
        target covers), where only those committed after the resume point are."""
        if self._delivered:
            return True
        since = self.listener.since_moment
        return since is not None and moment > since

    @property
    def active(self) -> bool:
        return not self._closed.is_set()

    def stop(self) -> None:
        self._closed.set()
        if self._call is not None:
            self._call.cancel()


def _write(path: str, at: datetime, *, deleted: bool = False) -> Write:
    return Write(path.split("/")[1], path, at, deleted=deleted)


class Listener:
    """Both streams of one `listen_writes`; stop() ends them."""

    STREAMS = (WALLETS, LEDGER)

    def __init__(self, connection: Connection, callback: OnWrites, since: datetime | None):
        self.connection = connection
        self._callback = callback
        self.since_moment = _moment(encoding.timestamp(since)) if since is not None else None
        self._lock = threading.Lock()
        self._read_times: dict[str, datetime] = {}
        self._first = threading.Event()
        self._streams: list[_Stream] = []

    def deliver(self, stream: str, writes: list[Write], read_time: datetime) -> None:
        self._callback(writes, read_time)
        with self._lock:
            self._read_times[stream] = read_time
            if len(self._read_times) == len(self.STREAMS):
                self._first.set()

    @property
    def active(self) -> bool:
        """Both streams still listening (one that ended or failed is not)."""
        return bool(self._streams) and all(stream.active for stream in self._streams)

    def read_time(self) -> datetime | None:
        """The stream furthest behind's last consistent point: every write committed
        up to it has been handed to the callback. None before both first points."""
        with self._lock:
            if len(self._read_times) < len(self.STREAMS):
                return None
            return min(self._read_times.values())

    def stop(self) -> None:
        for stream in self._streams:
            stream.stop()
        self._streams = []


class Listening:
    def __init__(self, connection: Connection):
        self.connection = connection

    def listen_writes(self, callback: OnWrites, *, since: datetime | None = None) -> Listener:
        """Listen to the writes of wallets and ledger entries (see the module);
        returns once both streams delivered their first consistent point."""
        # Firestore must answer first: a plain read under the retry deadline says
        # "unavailable" without opening a stream.
        probe = self.connection.client.collection(CONFIG).document("adjustments")
        self.connection.retry(lambda: probe.get(retry=None, timeout=self.connection.call_timeout))()
        listener = Listener(self.connection, callback, since)
        for stream, all_descendants in ((WALLETS, False), (LEDGER, True)):
            request = encoding.listen_request(
                self.connection.database,
                self.connection.documents,
                stream,
                all_descendants=all_descendants,
                target_id=TARGET_ID,
            )
            listener._streams.append(_Stream(listener, stream, request))
        started = time.monotonic()
        try:
            for opened in listener._streams:
                opened.thread.start()
            while not listener._first.wait(0.05):
                failed = [s.error for s in listener._streams if s.error is not None]
                if failed:
                    raise failed[0]
                if time.monotonic() - started > self.connection.retry_deadline:
                    raise gexc.DeadlineExceeded(
                        f"no snapshot from Firestore's Listen within {time.monotonic() - started:.1f} s"
                    )
        except BaseException:
            listener.stop()
            raise
        return listener
