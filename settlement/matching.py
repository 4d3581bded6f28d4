"""Matching a settlement statement against the ledger and the stored deliveries.

The statement is streamed CHUNK_ROWS rows at a time: each chunk's ledger
entries (`wallets/{uid}/ledger/{entry id}`, the id from the row's business
identity) are read in batched reads, READS_AHEAD chunks ahead in threads of
their own, while the chunk before is classified and its outcomes stored in one
bulk insert. Only the rows whose entry is not where the statement says are
looked at further (the identity markers: credited to another wallet?; the
stored deliveries: can replay apply it?). Duplicates are found through the
rows already stored, so memory holds a few chunks whatever the file's size.

Then the other direction: payments this product applied (applied deliveries of
`payment.succeeded`, by `applied_at`) within the statement's period that no
statement row names: `missing_at_provider`.
"""

from __future__ import annotations

import contextvars
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db.models import Min

from backfill import events
from backfill.models import EventStatus, ProviderEventDelivery
from revassure.firestore import FirestoreGateway
from revassure.ledger import is_points
from settlement import statement
from settlement.models import OUTCOMES, Outcome, SettlementRow, SettlementRun
from settlement.statement import Malformed, StatementRow

CHUNK_ROWS = 1000
READS_AHEAD = 2
_ABSENT = object()


@dataclass
class Tally:
    """The run's counts and totals so far (bounded: one entry per outcome and currency)."""

    rows: int = 0
    counts: Counter = field(default_factory=Counter)
    points: Counter = field(default_factory=Counter)
    money: dict = field(default_factory=lambda: defaultdict(lambda: defaultdict(Decimal)))
    first_settled: datetime | None = None
    last_settled: datetime | None = None

    def add(self, row: SettlementRow, *, from_statement: bool = True) -> None:
        self.rows += from_statement
        self.counts[row.outcome] += 1
        if row.outcome == Outcome.MALFORMED:
            return
        self.points[row.outcome] += row.points or 0
        if row.amount is not None:
            self.money[row.outcome][row.currency] += row.amount
        if row.settled_at is not None:
            if self.first_settled is None or row.settled_at < self.first_settled:
                self.first_settled = row.settled_at
            if self.last_settled is None or row.settled_at > self.last_settled:
                self.last_settled = row.settled_at

    def fields(self) -> dict:
        """The run's columns these make (counts, totals)."""
        return {
            "rows": self.rows,
            **{name: self.counts[name] for name in OUTCOMES},
            "malformed_rows": self.counts[Outcome.MALFORMED],
            "totals": {
                name: {
                    "points": self.points[name],
                    "money": {c: f"{v.normalize():f}" for c, v in sorted(self.money[name].items())},
                }
                for name in OUTCOMES
            },
        }


def match_statement(
    run: SettlementRun,
    lines: Iterable[str],
    *,
    gateway: FirestoreGateway,
    period: tuple[datetime, datetime] | None = None,
) -> Tally:
    """Match every row of the statement, store the outcomes, then the applied
    payments the statement lacks; the run's counters move chunk by chunk (its
    progress). statement.BadStatement before any row when the header is wrong."""
    tally = Tally()
    rows = statement.read_rows(lines)
    with ThreadPoolExecutor(max_workers=READS_AHEAD, thread_name_prefix="settlement-reads") as readers:
        queued: deque = deque()
        for chunk in _chunked(rows, CHUNK_ROWS):
            keys = [(r.user_id, r.entry_id) for r in chunk if isinstance(r, StatementRow)]
            read = readers.submit(contextvars.copy_context().run, gateway.ledger_entry_amounts, keys)
            queued.append((chunk, read))
            if len(queued) > READS_AHEAD:
                chunk, read = queued.popleft()
                _settle(run, chunk, read.result(), gateway=gateway, tally=tally)
        while queued:
            chunk, read = queued.popleft()
            _settle(run, chunk, read.result(), gateway=gateway, tally=tally)
    start, end = period or (tally.first_settled, tally.last_settled)
    if start is not None and end is not None:
        _missing_at_provider(run, start, end, tally)
    SettlementRun.objects.filter(pk=run.pk).update(period_start=start, period_end=end, **tally.fields())
    return tally


def _chunked(items: Iterator, size: int) -> Iterator[list]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _settle(run: SettlementRun, chunk: list, amounts: dict, *, gateway, tally: Tally) -> None:
    """Classify one chunk, store its rows, move the run's counters."""
    identities = {r.entry_id for r in chunk if isinstance(r, StatementRow)}
    first_lines = dict(
        SettlementRow.objects.filter(run=run, entry_id__in=identities)
        .values("entry_id")
        .annotate(first=Min("line"))
        .values_list("entry_id", "first")
    )
    results, unresolved = [], []
    for item in chunk:
        if isinstance(item, Malformed):
            results.append(
                SettlementRow(
                    run=run, line=item.line, outcome=Outcome.MALFORMED, detail=item.reason, raw=item.raw
                )
            )
            continue
        row = _row(run, item)
        results.append(row)
        if item.entry_id in first_lines:
            row.outcome = Outcome.DUPLICATE_IN_STATEMENT
            row.detail = f"the same {item.type} as line {first_lines[item.entry_id]}"
            continue
        first_lines[item.entry_id] = item.line
        amount = amounts.get((item.user_id, item.entry_id), _ABSENT)
        if amount is _ABSENT:
            unresolved.append((item, row))
        else:
            _found(item, row, amount)
    if unresolved:
        _not_found(unresolved, gateway=gateway)
    SettlementRow.objects.bulk_create(results, batch_size=500)
    for row in results:
        tally.add(row)
    SettlementRun.objects.filter(pk=run.pk).update(**tally.fields())


def _row(run: SettlementRun, item: StatementRow) -> SettlementRow:
    return SettlementRow(
        run=run,
        line=item.line,
        outcome=Outcome.MATCHED,
        type=item.type,
        payment_id=item.payment_id,
        reference=item.reference,
        user_id=item.user_id,
        points=item.points,
        amount=item.amount,
        currency=item.currency,
        status=item.status,
        settled_at=item.settled_at,
        entry_id=item.entry_id,
    )


def _expected(item: StatementRow) -> int:
    """The amount the row's ledger entry carries when all is well."""
    return item.points if item.type == "payment" else -item.points


def _found(item: StatementRow, row: SettlementRow, amount) -> None:
    """The entry is in the wallet the statement names."""
    row.ledger_uid = item.user_id
    row.ledger_amount = amount if is_points(amount) else None
    shown = f"{amount:+,}" if is_points(amount) else f"malformed ({events.printable(amount)})"
    if not item.settled:
        row.outcome = Outcome.NOT_SETTLED
        row.detail = f"{item.status} at the provider, yet in the ledger with {shown} points"
    elif not is_points(amount) or amount != _expected(item):
        row.outcome = Outcome.POINTS_MISMATCH
        row.detail = f"the statement says {_expected(item):+,} points, the ledger entry {shown}"
    else:
        row.detail = ""


def _not_found(unresolved: list, *, gateway) -> None:
    """Rows whose entry is not in the named wallet: credited elsewhere (the
    identity marker says where), or not credited at all (and then, for a
    payment, whether a stored delivery could credit it)."""
    owners = gateway.identity_owners([item.entry_id for item, _ in unresolved])
    missing_payments = []
    for item, row in unresolved:
        owner = owners.get(item.entry_id)
        elsewhere = owner is not None and owner != item.user_id
        if elsewhere:
            row.ledger_uid = owner
        if not item.settled:
            if elsewhere:
                row.outcome = Outcome.NOT_SETTLED
                row.detail = f"{item.status} at the provider, yet credited to wallet {owner}"
            else:
                row.detail = f"{item.status} at the provider and not in the ledger: they agree"
        elif elsewhere:
            row.outcome = Outcome.USER_MISMATCH
            row.detail = f"settled for wallet {item.user_id}, credited to wallet {owner}"
        elif item.type == "payment":
            row.outcome = Outcome.MISSING_IN_LEDGER
            missing_payments.append((item, row))
        else:
            row.outcome = Outcome.UNREVERSED
            row.detail = f"the {item.type} settled; no entry {item.entry_id} in wallet {item.user_id}"
    if missing_payments:
        _with_deliveries(missing_payments)


def _with_deliveries(missing: list) -> None:
    """For each payment missing in the ledger, a stored delivery of it, if any:
    replayable when it credits the wallet the statement names."""
    stored = defaultdict(list)
    deliveries = ProviderEventDelivery.objects.filter(
        entry_id__in={item.entry_id for item, _ in missing}
    ).order_by("pk")
    for pk, entry_id, user_id, status in deliveries.values_list("pk", "entry_id", "user_id", "status"):
        stored[entry_id].append((pk, user_id, status))
    for item, row in missing:
        candidates = stored.get(item.entry_id, [])
        same = [c for c in candidates if c[1] == item.user_id]
        if same:
            row.delivery_id, row.replayable = same[0][0], True
            row.detail = (
                f"settled, never credited; stored delivery {same[0][0]} ({same[0][2]}) can be replayed"
            )
        elif candidates:
            row.delivery_id = candidates[0][0]
            row.detail = (
                f"settled, never credited; the stored delivery {candidates[0][0]} names wallet "
                f"{candidates[0][1]}, not {item.user_id}: not replayable as is"
            )
        else:
            row.detail = "settled, never credited, and no delivery of it is stored"


def _missing_at_provider(run: SettlementRun, start: datetime, end: datetime, tally: Tally) -> None:
    """Applied payments within [start, end] that no row of the statement names."""
    named = SettlementRow.objects.filter(run=run).exclude(entry_id="").values("entry_id")
    applied = (
        ProviderEventDelivery.objects.filter(
            event_type=events.PAYMENT, status=EventStatus.APPLIED, applied_at__gte=start, applied_at__lte=end
        )
        .exclude(entry_id__in=named)
        .order_by("entry_id", "pk")
    )
    batch, last = [], None
    for delivery in applied.iterator(chunk_size=1000):
        if delivery.entry_id == last:
            continue  # the same payment delivered twice: one row
        last = delivery.entry_id
        try:
            event = events.parse(delivery.raw)
        except events.Unusable:
            continue  # an applied delivery always parses; one that does not was never applied
        batch.append(
            SettlementRow(
                run=run,
                outcome=Outcome.MISSING_AT_PROVIDER,
                type="payment",
                payment_id=event.payment_id,
                user_id=event.user_id,
                points=event.points,
                entry_id=delivery.entry_id,
                ledger_uid=event.user_id,
                ledger_amount=event.amount,
                delivery=delivery,
                detail=f"credited from delivery {delivery.pk} on {delivery.applied_at:%Y-%m-%d %H:%M} UTC; "
                "not in the statement",
            )
        )
        if len(batch) == CHUNK_ROWS:
            _store_extra(batch, tally)
            batch = []
    _store_extra(batch, tally)


def _store_extra(batch: list, tally: Tally) -> None:
    SettlementRow.objects.bulk_create(batch, batch_size=500)
    for row in batch:
        tally.add(row, from_statement=False)
