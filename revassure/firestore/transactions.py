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
transaction runs again whole.

ABORTED is contention, transient like the rest: attempts go on, with a
jittered pause that grows, until the retry deadline (and at least five, as the public
@transactional makes). A fixed count of five is not enough under contention:
Firestore lets one of the transactions that conflict on a document commit at
a time, so the ninth of nine concurrent payments to one wallet needs nine.

The writes that race for one wallet (provider events, heals, adjustments) do
not lock at all: `commit_when_unchanged` reads, decides, and commits on the
condition that the wallet is unchanged since it was read, in rounds. Locking
transactions that read one ledger wait on each other's read locks until a lock
timeout aborts them all; under load Google's emulator did that for a minute on
end, and eight concurrent refunds of one payment all failed. Read-only
transactions (consistent reads of many wallets) take no locks and stay here.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from google.api_core import exceptions as gexc
from google.cloud.firestore_v1.types import firestore as firestore_pb

from revassure.firestore import encoding
from revassure.firestore.client import Connection
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
# Pauses between rounds of a conditional commit refused because someone else
# moved the wallet first: jittered, from zero up to a bound that doubles. Short:
# the winner's write is already there to read, nobody waits on a lock.
CONFLICT_PAUSE = {"initial": 0.01, "maximum": 0.5}
REFUSED_CONDITION = (gexc.AlreadyExists, gexc.FailedPrecondition, gexc.NotFound)
T = TypeVar("T")
# body(transaction id): reads with the id.
Body = Callable[[bytes], T]


class Transactions:
    """Read-only transactions, optimistic rounds and the raw commit (`commit`,
    `commit_when_unchanged`: what the writing parts commit with)."""

    def __init__(self, connection: Connection, reads: Reads):
        self.connection, self.reads = connection, reads

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
            states.update(self._run_transaction(self._wallets_and_ledgers(some, concurrency)))
        return states

    def _wallets_and_ledgers(self, uids: list[str], concurrency: int) -> Body[dict[str, WalletState]]:
        def body(transaction: bytes) -> dict[str, WalletState]:
            totals = self.connection.submit(self.reads.aggregate_many(uids, concurrency, transaction))
            try:
                names = [self.connection.document(WALLETS, uid) for uid in uids]
                wallets = self.reads.get(names, mask=("points",), transaction=transaction)
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

    def _run_transaction(self, body: Body[T]) -> T:
        """A read-only transaction: every read of `body(transaction id)` sees one
        snapshot. It takes no locks; ABORTED (the server ended it) runs it again
        after a jittered pause, until the retry deadline and at least
        MIN_ATTEMPTS times. A commit whose answer is lost leaves the reads
        as good as they were: nothing was written."""
        deadline = time.monotonic() + self.connection.retry_deadline
        bound = ABORTED_PAUSE["initial"]
        attempt = 0
        while True:
            attempt += 1
            started = time.monotonic()
            transaction = self._begin()
            try:
                result = body(transaction)
            except gexc.Aborted:
                bound = min(ABORTED_PAUSE["maximum"], max(bound * 2, time.monotonic() - started))
                pause = random.uniform(0.0, bound)
                if attempt >= MIN_ATTEMPTS and time.monotonic() + pause > deadline:
                    raise
                time.sleep(pause)
                continue
            except BaseException:
                self._rollback(transaction)
                raise
            try:
                self.commit([], transaction=transaction)
            except gexc.GoogleAPIError:
                pass  # a read-only transaction writes nothing: its reads stand, and it expires
            return result

    def commit_when_unchanged(self, round_: Callable[[], tuple[T, list]], what: str) -> T:
        """Optimistic rounds: `round_()` reads without locks and decides, giving
        (result, writes); the writes, conditioned on what was read (documents
        new, wallets unchanged since), commit atomically, or are refused and
        the round runs again after a short jittered pause, until the retry
        deadline (and at least MIN_ATTEMPTS rounds). No writes: the result stands.

        Of the rounds racing for one wallet the first to commit wins and the
        others read its write next time: every round makes progress. Locking
        transactions that read the same ledger instead wait on each other's
        read locks until a lock timeout aborts them all (Google's emulator),
        and under load can go on doing so for as long as anyone retries.

        A commit whose answer is lost is sent again by the client's retry;
        when the first landed, the second is refused (its documents exist) and
        the next round recognises its own write (an entry's delivery id, a
        change's marker): applied once.
        """
        deadline = time.monotonic() + self.connection.retry_deadline
        bound = CONFLICT_PAUSE["initial"]
        attempt = 0
        while True:
            attempt += 1
            result, writes = round_()
            if not writes:
                return result
            try:
                self.commit(writes)
                return result
            except REFUSED_CONDITION as exc:
                pause = random.uniform(0.0, bound)
                if attempt >= MIN_ATTEMPTS and time.monotonic() + pause > deadline:
                    raise gexc.Aborted(f"{what}: the wallet kept changing ({exc.message})") from exc
                time.sleep(pause)
                bound = min(CONFLICT_PAUSE["maximum"], bound * 2)

    def _begin(self) -> bytes:
        """Begin a read-only transaction."""
        request = encoding.BeginTransactionRequest(database=self.connection.database)
        request.options.CopyFrom(encoding.READ_ONLY)
        response = self.connection.api.begin_transaction(
            request=firestore_pb.BeginTransactionRequest.wrap(request),
            retry=self.connection.retry,
            timeout=self.connection.call_timeout,
            metadata=self.connection.metadata,
        )
        return firestore_pb.BeginTransactionResponse.pb(response).transaction

    def commit(self, writes: list, *, transaction: bytes | None = None) -> list:
        """Commit raw Writes atomically (in the transaction, when given one); the
        raw WriteResults, one per write."""
        request = encoding.CommitRequest(database=self.connection.database, writes=writes)
        if transaction is not None:
            request.transaction = transaction
        response = self.connection.api.commit(
            request=firestore_pb.CommitRequest.wrap(request),
            # Sent again when its answer is lost: the product's commits are
            # conditional (documents new, wallets unchanged) or idempotent
            # (batches of whole documents), and a read-only one only ends its transaction.
            retry=self.connection.retry,
            timeout=self.connection.call_timeout,
            metadata=self.connection.metadata,
        )
        return list(firestore_pb.CommitResponse.pb(response).write_results)

    def _rollback(self, transaction: bytes) -> None:
        """Best effort, one attempt: the error that got us here is the one to
        raise, and a transaction left open expires on the server."""
        request = encoding.RollbackRequest(database=self.connection.database, transaction=transaction)
        try:
            self.connection.api.rollback(
                request=firestore_pb.RollbackRequest.wrap(request),
                retry=None,
                timeout=self.connection.call_timeout,
                metadata=self.connection.metadata,
            )
        except gexc.GoogleAPICallError:
            pass
