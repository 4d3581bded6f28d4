"""Ledger entries looked up by what names them, for settlement matching and
backfill's completeness: entries by (wallet, entry id), the wallet each
business identity was credited to (its identity marker), and every credit in a
period whatever wrote it. Batched reads through the raw `Reads.get`; the
period's credits a collection-group query through the public client."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from google.cloud.firestore_v1 import FieldFilter
from google.cloud.firestore_v1.field_path import FieldPath

from revassure.firestore.client import Connection
from revassure.firestore.model import IDENTITIES, LEDGER, MISSING, WALLETS, identity_path
from revassure.firestore.reads import BATCH_LIMIT, Reads, field

CREDITS_PAGE = 1000  # ledger entries in one page of credits_between
CREDIT_FIELDS = ("amount", "paymentId", "createdAt", "deliveryId")


class EntryReads:
    def __init__(self, connection: Connection, reads: Reads):
        self.connection, self.reads = connection, reads

    def entries_exist(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], bool]:
        """Whether each (uid, entry id) is in that wallet's ledger, in batched reads."""
        names = {
            self.connection.document(WALLETS, f"{uid}/{LEDGER}/{entry}"): (uid, entry) for uid, entry in keys
        }
        found = dict.fromkeys(keys, False)
        listed = list(names)
        for start in range(0, len(listed), BATCH_LIMIT):
            for name in self.reads.get(listed[start : start + BATCH_LIMIT], mask=()):
                found[names[name]] = True
        return found

    def ledger_entry_amounts(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], Any]:
        """The raw `amount` of each (uid, entry id) found in that wallet's ledger
        (`wallets/{uid}/ledger/{entry id}`), in batched reads of BATCH_LIMIT;
        entries that do not exist are left out, an entry without the field maps
        to MISSING. Settlement matching reads a statement's entries this way."""
        names = {
            self.connection.document(WALLETS, f"{uid}/{LEDGER}/{entry}"): (uid, entry) for uid, entry in keys
        }
        listed = list(names)
        found: dict[tuple[str, str], Any] = {}
        for start in range(0, len(listed), BATCH_LIMIT):
            batch = self.reads.get(listed[start : start + BATCH_LIMIT], mask=("amount",))
            for name, document in batch.items():
                found[names[name]] = field(document, "amount", MISSING)
        return found

    def identity_owners(self, entry_ids: list[str]) -> dict[str, Any]:
        """The wallet credited with each business identity (its ledger entry id)
        that has been credited, from the identity markers, in batched reads;
        identities never credited through revassure are left out."""
        names = {self.connection.document(IDENTITIES, identity_path(entry)): entry for entry in entry_ids}
        listed = list(names)
        owners: dict[str, Any] = {}
        for start in range(0, len(listed), BATCH_LIMIT):
            for name, document in self.reads.get(listed[start : start + BATCH_LIMIT], mask=("uid",)).items():
                owners[names[name]] = field(document, "uid", None)
        return owners

    def credits_between(
        self, start: dt.datetime, end: dt.datetime
    ) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """(uid, entry id, fields) of every purchase entry in any wallet's ledger
        whose `createdAt` is within [start, end], whatever wrote it (the webhook,
        a replay, the points app): a collection-group query (index in
        firestore.indexes.json) in order of createdAt then name, a page of
        CREDITS_PAGE per call, each page under the retry on its own. `fields`
        holds CREDIT_FIELDS, those the entry has."""
        query = (
            self.connection.client.collection_group(LEDGER)
            .where(filter=FieldFilter("type", "==", "purchase"))
            .where(filter=FieldFilter("createdAt", ">=", start))
            .where(filter=FieldFilter("createdAt", "<=", end))
            .order_by("createdAt")
            .order_by(FieldPath.document_id())
            .select(CREDIT_FIELDS)
            .limit(CREDITS_PAGE)
        )
        last = None
        while True:
            page = query if last is None else query.start_after(last)
            snaps = self.connection.retry(
                lambda page=page: list(page.stream(retry=None, timeout=self.connection.call_timeout))
            )()
            for snap in snaps:
                yield snap.reference.parent.parent.id, snap.id, snap.to_dict()
            if len(snaps) < CREDITS_PAGE:
                return
            last = snaps[-1]
