"""Reading at a point in time: the server's present, and whether the backend
honours `read_time` at all.

Firestore answers a get, a query, an aggregation or a ListDocuments "as of"
a `read_time` within its read-time window (the last hour; seven days, at whole
minutes, with point-in-time recovery). Google's emulator does the same. Our
npm launcher (scripts/firestore-emulator.js) does not: it answers the present
to a get, a query or an aggregation at a read time, and refuses a
ListDocuments at one. A caller that wants one instant asks
`read_time_support()` first and reads live, saying so, when it is not there.
"""

from __future__ import annotations

import os
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime

from google.api_core import exceptions as gexc
from google.cloud.firestore_v1.types import firestore as firestore_pb

from revassure.firestore import encoding
from revassure.firestore.client import Connection
from revassure.firestore.model import CONFIG
from revassure.firestore.reads import Reads, field
from revassure.firestore.snapshots import Snapshots
from revassure.firestore.transactions import Transactions

PROBE_PREFIX = "readTimeProbe-"  # config/readTimeProbe-{random}: written, read back, deleted


@dataclass(frozen=True)
class ReadTimeSupport:
    supported: bool
    reason: str = ""  # why not, when not


class ReadTimes:
    def __init__(
        self, connection: Connection, reads: Reads, transactions: Transactions, snapshots: Snapshots
    ):
        self.connection = connection
        self.reads, self.transactions, self.snapshots = reads, transactions, snapshots
        self._support: ReadTimeSupport | None = None
        self._support_lock = threading.Lock()

    def server_time(self) -> datetime:
        """The server's present (to the microsecond, as Firestore takes read times)."""
        return self.snapshots.snapshot_read_time()

    def read_time_support(self) -> ReadTimeSupport:
        """Whether this backend answers reads as of a `read_time`: found out once per
        gateway. Firestore does (its documented contract, no probe); on an
        emulator a probe writes a scratch document twice, reads it (by name and
        in a listing) as of its first version, and deletes it."""
        if self._support is None:
            with self._support_lock:
                if self._support is None:
                    self._support = self._probe() if os.environ.get("FIRESTORE_EMULATOR_HOST") else SUPPORTED
        return self._support

    def _probe(self) -> ReadTimeSupport:
        name = self.connection.document(CONFIG, f"{PROBE_PREFIX}{uuid.uuid4().hex[:12]}")

        def version(n: int):
            write = encoding.Write(
                update=encoding.Document(name=name, fields=encoding.encode_fields({"n": n}))
            )
            return self.transactions.commit([write])[0].update_time

        try:
            first = version(1)
            version(2)
            found = self.reads.get([name], read_time=first).get(name)
            if field(found, "n", None) != 1:
                return ReadTimeSupport(
                    False, "the Firestore backend answers reads at a read time with the present"
                )
            request = encoding.listing_request(self.connection.documents, CONFIG, "", show_missing=False)
            request.read_time.CopyFrom(first)
            try:
                self.connection.retry(self.connection.api.list_documents)(
                    request=firestore_pb.ListDocumentsRequest.wrap(request),
                    retry=None,
                    timeout=self.connection.call_timeout,
                    metadata=self.connection.metadata,
                )
            except (gexc.MethodNotImplemented, gexc.InvalidArgument) as exc:
                return ReadTimeSupport(
                    False, f"the Firestore backend refuses listings at a read time ({exc})"
                )
            return SUPPORTED
        finally:
            self.transactions.commit([encoding.Write(delete=name)])


SUPPORTED = ReadTimeSupport(True)
