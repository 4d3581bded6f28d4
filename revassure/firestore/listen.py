"""Listening to the writes of wallets and ledger entries (Firestore's Listen API).

`listen_writes(callback, since=...)` opens two snapshot listeners of the public
client (`on_snapshot`): one on the `wallets` collection, one on the collection
group `ledger`. Each delivered change becomes a `Write` (the wallet's uid, the
document, its commit time), handed to `callback(writes, read_time)` from the
listener's own thread, once per snapshot, in the order the stream delivers
them; `read_time` is the snapshot's: every write committed up to it on that
stream has been handed over.

A listener's first snapshot holds every document it covers: those updated
after `since` are handed over as writes (what a restarted watcher missed), the
rest are not (None: none are). A deletion is a write at the snapshot's read
time (Firestore keeps no time for it).

The first snapshots must arrive within the gateway's retry deadline, or the
listening ends with DeadlineExceeded. Later, the client's `Watch` resumes a
dropped stream by itself (with its resume token) on transient errors; one that
ends for good leaves `Listener.active` False, and the caller listens again
(from its own resume point). Every listener holds the documents it covers in
memory (the client keeps them to compute changes): see docs/realtime.md.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from google.api_core import exceptions as gexc
from google.cloud.firestore import CollectionGroup, CollectionReference
from google.cloud.firestore_v1.watch import ChangeType

from revassure.firestore.model import CONFIG, LEDGER, WALLETS
from revassure.firestore.snapshots import Snapshots


@dataclass(frozen=True)
class Write:
    """One document written: a wallet or one of its ledger entries."""

    uid: str
    document: str  # its path below the database's documents, "wallets/u1/ledger/e1"
    write_time: datetime  # its commit time (a deletion: the snapshot's read time)
    deleted: bool = False


OnWrites = Callable[[list[Write], datetime], None]


class Listener:
    """Both listeners of one `listen_writes`; stop() ends them."""

    STREAMS = (WALLETS, LEDGER)

    def __init__(self, callback: OnWrites, since: datetime | None):
        self._callback = callback
        self._since = since
        self._lock = threading.Lock()
        self._read_times: dict[str, datetime] = {}
        self._first = threading.Event()
        self._watches: list = []

    def _on_snapshot(self, stream: str):
        def handle(docs, changes, read_time):
            first = stream not in self._read_times
            writes = []
            for change in changes:
                snapshot = change.document
                path = snapshot.reference.path
                uid = path.split("/")[1]
                if change.type == ChangeType.REMOVED:
                    writes.append(Write(uid, path, read_time, deleted=True))
                    continue
                if first and (self._since is None or snapshot.update_time <= self._since):
                    continue  # checked before the last resume point
                writes.append(Write(uid, path, snapshot.update_time))
            self._callback(writes, read_time)
            with self._lock:
                self._read_times[stream] = read_time
                if len(self._read_times) == len(self.STREAMS):
                    self._first.set()

        return handle

    @property
    def active(self) -> bool:
        """Both streams still listening (a stream the client gave up on is not)."""
        return bool(self._watches) and all(watch.is_active for watch in self._watches)

    def read_time(self) -> datetime | None:
        """The stream furthest behind's last snapshot time: every write committed
        up to it has been handed to the callback. None before both first snapshots."""
        with self._lock:
            if len(self._read_times) < len(self.STREAMS):
                return None
            return min(self._read_times.values())

    def stop(self) -> None:
        for watch in self._watches:
            watch.unsubscribe()
        self._watches = []


class Listening(Snapshots):
    def listen_writes(self, callback: OnWrites, *, since: datetime | None = None) -> Listener:
        """Listen to the writes of wallets and ledger entries (see the module);
        returns once both listeners delivered their first snapshot."""
        # Firestore must answer first: google-cloud-firestore's Listen, started
        # against a server out of reach, retries in threads that unsubscribe does
        # not end (hundreds a second). A plain read under the retry deadline says
        # "unavailable" without starting any.
        client = self.client
        probe = client.collection(CONFIG).document("adjustments")
        self.retry(lambda: probe.get(retry=None, timeout=self.call_timeout))()
        listener = Listener(callback, since)
        queries: dict[str, CollectionReference | CollectionGroup] = {
            WALLETS: client.collection(WALLETS),
            LEDGER: client.collection_group(LEDGER),
        }
        started = time.monotonic()
        try:
            for stream in Listener.STREAMS:
                listener._watches.append(queries[stream].on_snapshot(listener._on_snapshot(stream)))
            if not listener._first.wait(self.retry_deadline):
                raise gexc.DeadlineExceeded(
                    f"no snapshot from Firestore's Listen within {time.monotonic() - started:.1f} s"
                )
        except BaseException:
            listener.stop()
            raise
        return listener
