"""Writes: balance changes and provider events (conditional and batched
commits of raw writes), seeding, reports and mirrors (the public batch API)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.utils import timezone
from google.api_core import exceptions as gexc
from google.cloud import firestore

from revassure.firestore.client import Connection
from revassure.firestore.encoding import create_write, increment_write, set_points_write, touch_write
from revassure.firestore.model import (
    AUDIT_LOG,
    CONFIG,
    IDENTITIES,
    LEDGER,
    MIGRATIONS,
    MISSING,
    REPORTS,
    SETTLEMENT_REPORTS,
    SETTLEMENT_ROWS,
    VIOLATIONS,
    WALLETS,
    BalanceChange,
    ChangeOutcome,
    Decide,
    EventOutcome,
    ProviderEventFacts,
    WalletView,
    identity_path,
)
from revassure.firestore.reads import BATCH_LIMIT, Reads, points_of
from revassure.firestore.transactions import Transactions
from revassure.ledger import balances_unchanged, is_points


class Writes:
    def __init__(self, connection: Connection, reads: Reads, transactions: Transactions):
        self.connection, self.reads, self.transactions = connection, reads, transactions

    # -- balance changes ---------------------------------------------------

    def apply_balance_change(self, change: BalanceChange) -> ChangeOutcome:
        """Apply a heal or a manual adjustment, atomically and at most once.

        First looks for the change's own marker (its ledger entry, or for a
        rebalance its auditLog record), whose id derives from the request:
        found means a previous attempt committed, and nothing is written again.
        Then reads the wallet and its ledger sum and refuses (stale) unless they
        are exactly what the approver saw. The commit (the marker, new; the
        wallet, unchanged since it was read: moved, or for a post adjustment
        only its updatedAt touched) is refused if anything moved the wallet or
        its ledger meanwhile, and the change is read and decided again: the
        same optimistic rounds as `apply_provider_event`, and for the same
        reason.
        """
        wallet = self.connection.document(WALLETS, change.uid)
        marker = self._marker(change)

        def round_() -> tuple[ChangeOutcome, list]:
            found = self.reads.get([marker, wallet])
            if marker in found:
                return ChangeOutcome("already_applied"), []
            snap = found.get(wallet)
            points, version = points_of(snap), None if snap is None else snap.update_time
            ledger = self.reads.ledger_totals(change.uid)  # after the wallet: its version covers it
            if version is None or not balances_unchanged(
                points,
                ledger.total,
                seen_points=change.expected_points,
                seen_ledger_sum=change.expected_ledger_sum,
            ):
                return ChangeOutcome("stale", points_before=points, ledger_before=ledger.total), []
            now = timezone.now()
            if change.mode == "rebalance":
                after = ledger.total
                record = {**change.record, "before": points, "after": after, "at": now}
                writes = [set_points_write(wallet, after, update_time=version), create_write(marker, record)]
            elif change.mode == "post_adjustment":
                after = points  # the ledger moves to meet the wallet
                record = {**change.record, "amount": change.amount, "createdAt": now}
                writes = [create_write(marker, record), touch_write(wallet, update_time=version)]
            else:
                after = points + change.amount
                record = {**change.record, "amount": change.amount, "createdAt": now}
                writes = [create_write(marker, record), set_points_write(wallet, after, update_time=version)]
            outcome = ChangeOutcome(
                "applied", points_before=points, ledger_before=ledger.total, points_after=after
            )
            return outcome, writes

        return self.transactions.commit_when_unchanged(round_, change.marker_id)

    def balance_change_applied(self, change: BalanceChange) -> bool:
        """Whether the change's marker exists: the answer after an ambiguous failure."""
        return self.reads.get_one(self._marker(change)) is not None

    def _marker(self, change: BalanceChange) -> str:
        if change.mode == "rebalance":
            return self.connection.document(AUDIT_LOG, change.marker_id)
        return self.connection.document(WALLETS, f"{change.uid}/{LEDGER}/{change.marker_id}")

    # -- provider events (backfill) ------------------------------------------

    def apply_provider_event(
        self,
        event: ProviderEventFacts,
        *,
        decide: Decide,
        allow_negative: bool,
        delivery_id: int | None = None,
    ) -> EventOutcome:
        """Apply one provider event to its wallet, atomically and at most once.

        Reads what `decide` (the caller's business rules) needs without locks
        (`event_state`: the event's own entry, the wallet, the identity marker,
        for a reversal its original and earlier reversals), lets it decide, and
        when the decision is `applied` commits the entry, the wallet's increment
        and the identity marker together, on conditions: the entry and the
        marker are new, the wallet unchanged since it was read. A commit refused
        on a condition means someone else moved the wallet meanwhile: read
        again and decide again, with a short jittered pause.

        Optimistic rounds, not a locking transaction (`Transactions.commit_when_unchanged`
        says why); a lost answer ends with the next read finding the entry
        holding this delivery's id: applied, once.
        """
        wallet = self.connection.document(WALLETS, event.user_id)
        entry = f"{wallet}/{LEDGER}/{event.entry_id}"

        def round_() -> tuple[EventOutcome, list]:
            view, version = self.reads.event_state(event)
            if view.entry_exists and delivery_id is not None and view.entry_delivery_id == delivery_id:
                # This very delivery committed before (a lost answer, or a worker that died).
                return EventOutcome("applied", "committed by an earlier attempt of this delivery"), []
            decision = decide(event, view, allow_negative=allow_negative)
            if decision.status != "applied":
                return EventOutcome(decision.status, decision.reason), []
            writes = [
                create_write(entry, {**decision.entry, "deliveryId": delivery_id}),
                increment_write(wallet, event.amount, update_time=version),
                self._identity_write(event, delivery_id),
            ]
            after = view.points + event.amount
            outcome = EventOutcome("applied", decision.reason, points_before=view.points, points_after=after)
            return outcome, writes

        return self.transactions.commit_when_unchanged(round_, event.entry_id)

    def apply_payments(
        self,
        items: list[tuple[Any, int]],
        *,
        decide: Decide,
        known: dict[str, tuple[int, Any]] | None = None,
        outcomes: dict[int, EventOutcome] | None = None,
    ) -> dict[int, EventOutcome]:
        """Apply many payment events (event, delivery id) in few atomic commits.

        Each commit holds one payment per wallet: the ledger entry (`create`, so
        an entry that exists fails the commit) and the wallet's increment, on
        the condition that the wallet is unchanged since it was read (its update
        time). A commit that fails is split in halves until the one event at
        fault goes through the single conditional path, which says duplicate,
        quarantined or applied. Same checks as one at a time, far fewer round
        trips.

        `known` carries, from one call to the next of the same run, the points
        and update time of the wallets this run committed to: they need no
        second read, and the update-time condition still refuses the commit if
        anyone else wrote the wallet since.

        Outcomes go into `outcomes` (by delivery id) as each commit lands, so
        when a call raises half-way, the caller still knows which committed.
        """
        known = {} if known is None else known
        outcomes = {} if outcomes is None else outcomes
        group: list[tuple[Any, int]] = []
        users: set[str] = set()
        entries: set[str] = set()
        for event, delivery_id in items:
            # One payment per wallet, and one per business identity, in a commit.
            if event.user_id in users or event.entry_id in entries:
                self._commit_payments(group, outcomes, known, decide)
                group, users, entries = [], set(), set()
            group.append((event, delivery_id))
            users.add(event.user_id)
            entries.add(event.entry_id)
        self._commit_payments(group, outcomes, known, decide)
        return outcomes

    def _commit_payments(
        self, group: list[tuple[Any, int]], outcomes: dict[int, EventOutcome], known: dict, decide: Decide
    ) -> None:
        if not group:
            return
        unread = [event.user_id for event, _ in group if event.user_id not in known]
        if unread:
            known.update(self.reads.wallet_versions(unread))
        writes, planned = [], []
        for event, delivery_id in group:
            points, version = known.get(event.user_id, (MISSING, None))
            if not is_points(points):
                # Unknown user or malformed wallet: the single path says which.
                known.pop(event.user_id, None)
                outcomes[delivery_id] = self.apply_provider_event(
                    event, decide=decide, allow_negative=False, delivery_id=delivery_id
                )
                continue
            entry = decide(event, WalletView(False, True, points), allow_negative=False).entry
            wallet = self.connection.document(WALLETS, event.user_id)
            writes.append(
                create_write(f"{wallet}/{LEDGER}/{event.entry_id}", {**entry, "deliveryId": delivery_id})
            )
            writes.append(increment_write(wallet, event.amount, update_time=version))
            writes.append(self._identity_write(event, delivery_id))
            planned.append((event, delivery_id, points))
        if not planned:
            return
        try:
            results = self.transactions.commit(writes)
        except (gexc.AlreadyExists, gexc.FailedPrecondition, gexc.NotFound):
            for event, _, _ in planned:
                known.pop(event.user_id, None)  # read again: someone else may have moved it
            if len(planned) == 1:
                event, delivery_id, _ = planned[0]
                outcomes[delivery_id] = self.apply_provider_event(
                    event, decide=decide, allow_negative=False, delivery_id=delivery_id
                )
                return
            half = len(planned) // 2
            self._commit_payments([(e, d) for e, d, _ in planned[:half]], outcomes, known, decide)
            self._commit_payments([(e, d) for e, d, _ in planned[half:]], outcomes, known, decide)
            return
        for n, (event, delivery_id, points) in enumerate(planned):
            known[event.user_id] = (points + event.amount, results[3 * n + 1].update_time)
            outcomes[delivery_id] = EventOutcome(
                "applied", points_before=points, points_after=points + event.amount
            )

    def _identity_write(self, event, delivery_id: int | None):
        """Claim the event's business identity for its wallet: `create`, so a
        second wallet credited with the same payment, refund or chargeback
        fails the commit (and the single path then quarantines it)."""
        fields = {"uid": event.user_id, "entryId": event.entry_id, "deliveryId": delivery_id}
        return create_write(self.connection.document(IDENTITIES, identity_path(event.entry_id)), fields)

    # -- seeding, reports, migrations and config (the public batch API) -------

    def write_wallets(self, wallets: Iterable[tuple[str, Any, dict[str, dict[str, Any]]]]) -> int:
        """Write wallets with their ledgers in atomic batches (seeding, tests).

        Each item is (uid, points, {entry id: fields}); points of MISSING leave the
        field out. A wallet and its entries always land in the same commit.
        """
        written = 0
        batch, size = self.connection.client.batch(), 0
        for uid, points, entries in wallets:
            if size and size + 1 + len(entries) > BATCH_LIMIT:
                batch.commit(retry=self.connection.retry, timeout=self.connection.call_timeout)
                batch, size = self.connection.client.batch(), 0
            wallet = self.connection.client.collection(WALLETS).document(uid)
            doc = {"updatedAt": firestore.SERVER_TIMESTAMP}
            if points is not MISSING:
                doc["points"] = points
            batch.set(wallet, doc)
            for entry_id, fields in entries.items():
                batch.set(wallet.collection(LEDGER).document(entry_id), fields)
            size += 1 + len(entries)
            written += 1
        if size:
            batch.commit(retry=self.connection.retry, timeout=self.connection.call_timeout)
        return written

    def append_entry(self, uid: str, entry_id: str, fields: dict[str, Any]) -> None:
        """Append a ledger entry and move the wallet by its amount, atomically (seeding, tests).

        Raises AlreadyExists when the entry is already in the ledger.
        """
        wallet = self.connection.client.collection(WALLETS).document(uid)
        batch = self.connection.client.batch()
        batch.create(wallet.collection(LEDGER).document(entry_id), fields)
        batch.set(
            wallet,
            {"points": firestore.Increment(fields["amount"]), "updatedAt": firestore.SERVER_TIMESTAMP},
            merge=True,
        )
        batch.commit(retry=self.connection.retry, timeout=self.connection.call_timeout)

    def put_report(self, run_id: str, report: dict[str, Any], violations: Iterable[dict[str, Any]]) -> None:
        """Mirror a report: its header document, and one document per violation
        (keyed by uid) in its `violations` subcollection, which keeps each
        document far below Firestore's 1 MiB limit however many there are.
        The header is written last, so a reader that finds it finds them all.
        """
        doc = self.connection.client.collection(REPORTS).document(run_id)
        batch, size = self.connection.client.batch(), 0
        for violation in violations:
            batch.set(doc.collection(VIOLATIONS).document(violation["uid"]), violation)
            size += 1
            if size == BATCH_LIMIT:
                batch.commit(retry=self.connection.retry, timeout=self.connection.call_timeout)
                batch, size = self.connection.client.batch(), 0
        if size:
            batch.commit(retry=self.connection.retry, timeout=self.connection.call_timeout)
        doc.set(report, retry=self.connection.retry, timeout=self.connection.call_timeout)

    def put_settlement_report(
        self, run_id: str, report: dict[str, Any], rows: Iterable[tuple[str, dict[str, Any]]]
    ) -> None:
        """Mirror a settlement report: its header document in `settlementReports`,
        and its rows (id, fields) in a `rows` subcollection; the header last, so
        a reader that finds it finds them all."""
        doc = self.connection.client.collection(SETTLEMENT_REPORTS).document(run_id)
        batch, size = self.connection.client.batch(), 0
        for row_id, fields in rows:
            batch.set(doc.collection(SETTLEMENT_ROWS).document(row_id), fields)
            size += 1
            if size == BATCH_LIMIT:
                batch.commit(retry=self.connection.retry, timeout=self.connection.call_timeout)
                batch, size = self.connection.client.batch(), 0
        if size:
            batch.commit(retry=self.connection.retry, timeout=self.connection.call_timeout)
        doc.set(report, retry=self.connection.retry, timeout=self.connection.call_timeout)

    def put_migration(self, migration_id: str, data: dict[str, Any]) -> None:
        self.connection.client.collection(MIGRATIONS).document(migration_id).set(
            data, retry=self.connection.retry, timeout=self.connection.call_timeout
        )

    def put_config(self, name: str, data: dict[str, Any]) -> None:
        self.connection.client.collection(CONFIG).document(name).set(
            data, retry=self.connection.retry, timeout=self.connection.call_timeout
        )
