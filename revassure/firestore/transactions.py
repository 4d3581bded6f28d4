"""Transactions through the generated client, and the raw commit.

The public Transaction begins and commits without a retry or timeout of ours
(so the generated client's 60 s defaults would apply whatever
FIRESTORE_RETRY_DEADLINE says), and when BeginTransaction itself fails it
raises "no transaction ID, cannot be rolled back" in place of the real error.
So the gateway runs its own, as the public @transactional does: begin, run the
body (reads given the transaction id, writes collected), commit; on ABORTED
start again keeping the aborted transaction's place (retry_transaction); on
anything else roll back and raise the error itself.

A commit whose answer is lost (DEADLINE_EXCEEDED, UNAVAILABLE) may have been
applied: Firestore refuses it sent again (its transaction is spent), so the
transaction runs again whole, and each body recognises its own writes (a
provider event's entry holds its delivery id, a heal or adjustment has its
marker): applied once, and said so.

ABORTED is contention, transient like the rest: attempts go on, with a
jittered pause that grows, until the retry deadline (and at least five, as the public
@transactional makes). A fixed count of five is not enough under contention:
Firestore lets one of the transactions that conflict on a document commit at
a time, so the ninth of nine concurrent payments to one wallet needs nine.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.cloud.firestore_v1.types import firestore as firestore_pb

from revassure.firestore import encoding
from revassure.firestore.client import TRANSIENT_IN_TRANSACTION
from revassure.firestore.model import WALLETS, WalletState
from revassure.firestore.reads import Reads, points_of

READS_PER_TRANSACTION = 100  # wallets read in one read-only transaction (one batched read)

MIN_ATTEMPTS = 5  # as the public @transactional, whatever the deadline
# Pauses between attempts, jittered: uniform from zero up to a bound that doubles
# after each abort, and is at least as long as the attempt that was aborted took.
# Short where aborts are quick (a server that lets the older transaction win, and
# keeps a retry's place in line); where the server instead lets conflicting
# transactions wait on each other until a lock timeout aborts them (Google's
# emulator: 2 s, with no regard for age), every contender aborts at about the
# same moment, so their next attempts are spread over at least that long.
ABORTED_PAUSE = {"initial": 0.05, "maximum": 8.0}
T = TypeVar("T")
# body(transaction id, writes): reads with the id, appends raw Writes to commit.
Body = Callable[[bytes, list], T]


class Transactions(Reads):
    def read_wallets_and_ledgers(self, uids: list[str], *, concurrency: int) -> dict[str, WalletState]:
        """Read each wallet and its ledger totals together, in read-only
        transactions of at most READS_PER_TRANSACTION wallets.

        Both reads of a wallet see the same snapshot, so a write that moves its
        ledger and its points together (as the points app does) is seen whole
        or not at all. The wallets come in one batched read per transaction,
        the ledger totals as `concurrency` aggregation queries at a time on the
        gateway's event loop; a transaction stays short whatever the number of
        wallets (Firestore ends one idle for 60 s, or older than 270 s).
        """
        states: dict[str, WalletState] = {}
        for start in range(0, len(uids), READS_PER_TRANSACTION):
            some = uids[start : start + READS_PER_TRANSACTION]
            states.update(self._run_transaction(self._wallets_and_ledgers(some, concurrency), read_only=True))
        return states

    def _wallets_and_ledgers(self, uids: list[str], concurrency: int) -> Body[dict[str, WalletState]]:
        def body(transaction: bytes, writes: list) -> dict[str, WalletState]:
            totals = self.submit(self._aggregate_many(uids, concurrency, transaction))
            try:
                names = [self.document(WALLETS, uid) for uid in uids]
                wallets = self._get(names, mask=("points",), transaction=transaction)
                ledgers = totals.result()
            finally:
                totals.cancel()  # when the batched read failed, this attempt's aggregations stop
            states = {}
            for uid, name in zip(uids, names, strict=True):
                wallet = wallets.get(name)
                exists, points = wallet is not None, points_of(wallet)
                states[uid] = WalletState(exists=exists, points=points, ledger=ledgers[uid])
            return states

        return body

    def _run_transaction(self, body: Body[T], *, read_only: bool = False) -> T:
        deadline = time.monotonic() + self.retry_deadline
        bound = ABORTED_PAUSE["initial"]
        retry_id = None
        attempt = lost = 0
        while True:
            attempt += 1
            started = time.monotonic()
            transaction = self._begin(read_only=read_only, retry_id=retry_id)
            writes: list = []
            committing = False
            try:
                result = body(transaction, writes)
                committing = True
                self._commit(writes, transaction=transaction)
                return result
            except gexc.Aborted:
                # The server ended the transaction (contention): nothing to roll back.
                bound = min(ABORTED_PAUSE["maximum"], max(bound * 2, time.monotonic() - started))
                pause = random.uniform(0.0, bound)
                if attempt >= MIN_ATTEMPTS and time.monotonic() + pause > deadline:
                    raise
                time.sleep(pause)
                retry_id = None if read_only else transaction
            except TRANSIENT_IN_TRANSACTION:
                # The commit's answer is lost (deadline exceeded, connection
                # dropped): Firestore may have applied it. Sent again it would be
                # refused (the transaction is spent), so the whole transaction runs
                # again: its body reads what is there now and finds its own writes
                # (an entry's delivery id, a change's marker) when they landed.
                # A commit that never got there leaves its transaction holding
                # locks the next attempt needs: rolled back, retried like any call.
                self._rollback(transaction, retry=self.retry if committing else None)
                lost += 1
                bound = min(ABORTED_PAUSE["maximum"], bound * 2)
                pause = random.uniform(0.0, bound)
                if not committing or (lost > 1 and time.monotonic() + pause > deadline):
                    raise
                time.sleep(pause)
                retry_id = None
            except BaseException:
                self._rollback(transaction)
                raise

    def _begin(self, *, read_only: bool, retry_id: bytes | None) -> bytes:
        request = encoding.BeginTransactionRequest(database=self.database)
        options = encoding.transaction_options(read_only=read_only, retry_id=retry_id)
        if options is not None:
            request.options.CopyFrom(options)
        response = self.api.begin_transaction(
            request=firestore_pb.BeginTransactionRequest.wrap(request),
            retry=self.retry,
            timeout=self.call_timeout,
            metadata=self.metadata,
        )
        return firestore_pb.BeginTransactionResponse.pb(response).transaction

    def _commit(self, writes: list, *, transaction: bytes | None = None) -> list:
        """Commit raw Writes atomically (in the transaction, when given one); the
        raw WriteResults, one per write."""
        request = encoding.CommitRequest(database=self.database, writes=writes)
        if transaction is not None:
            request.transaction = transaction
        response = self.api.commit(
            request=firestore_pb.CommitRequest.wrap(request),
            # A transaction's commit is sent once: after a lost answer its
            # transaction is spent, and _run_transaction runs it again whole.
            retry=self.retry if transaction is None else None,
            timeout=self.call_timeout,
            metadata=self.metadata,
        )
        return list(firestore_pb.CommitResponse.pb(response).write_results)

    def _rollback(self, transaction: bytes, *, retry: gretry.Retry | None = None) -> None:
        """Best effort, one attempt unless given a retry: the error that got us
        here is the one to raise, and a transaction left open expires on the server.
        A transaction already committed refuses it (invalid): nothing to do."""
        request = encoding.RollbackRequest(database=self.database, transaction=transaction)
        try:
            self.api.rollback(
                request=firestore_pb.RollbackRequest.wrap(request),
                retry=retry,
                timeout=self.call_timeout,
                metadata=self.metadata,
            )
        except gexc.GoogleAPICallError:
            pass
