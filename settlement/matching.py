"""Matching a settlement statement against the ledger and the stored deliveries.

The statement is streamed CHUNK_ROWS rows at a time: each chunk's ledger
entries (`wallets/{uid}/ledger/{entry id}`, the id from the row's business
identity) are read in batched reads, READS_AHEAD chunks ahead in threads of
their own, while the chunk before is classified and its outcomes stored in one
bulk insert. Only the rows whose entry is not where the statement says are
looked at further (the identity markers: credited to another wallet?; the
stored deliveries: can replay apply it?). Duplicates are found through the
rows already stored, so memory holds a few chunks whatever the file's size.

A manual adjustment made for a row's payment (reconciliation.changes, one per
payment at most) counts toward what was credited once applied: the break it
closed is matched when the statement is matched again, and never offered twice.

Then the other direction, `missing_at_provider`: payments credited within the
statement's period that no statement row names. The ledger is the truth of what
was credited: every purchase entry whose `createdAt` is in the period, whatever
wrote it (the webhook, a file replay, the points app), and every delivery this
product applied in the period (by `applied_at`). A payment a malformed row
names, when its id can be read, is in the statement: never reported missing.
"""

from __future__ import annotations

import contextvars
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from django.db import transaction
from django.db.models import Min

from backfill import events
from backfill.models import EventStatus, ProviderEventDelivery
from reconciliation import change_queries
from reconciliation.models import BalanceRequest, RequestState
from revassure.firestore import FirestoreGateway
from revassure.formatting import signed
from revassure.ledger import is_points
from settlement import statement
from settlement.match_progress import Matched, Rows, Tally
from settlement.models import Outcome, SettlementRow, SettlementRun
from settlement.records import EMPTY_ROW
from settlement.statement import Malformed, StatementRow

CHUNK_ROWS = 1000
READS_AHEAD = 4
_ABSENT = object()


def match_statement(
    run: SettlementRun,
    lines: Iterable[str],
    *,
    gateway: FirestoreGateway,
    period: tuple[datetime, datetime] | None = None,
) -> Matched:
    """Match every row of the statement, store the outcomes, then the applied
    payments the statement lacks; the run's counters move chunk by chunk (its
    progress). statement.BadStatement before any row when the header is wrong.
    Returns the tally and the digest of the rows' canonical lines, in the
    order they were stored (reports.seal takes it, so sealing reads nothing back).

    Rows are stored only while the run is still this process's (`run.worker`,
    running or a dry run's scratch): each store commits with a conditional
    update of the run's counters, and RunTakenOver rolls the store back once
    another worker has taken the run over (this one was taken for dead)."""
    done = Matched(Tally(), Rows(run.pk), run)
    rows = statement.read_rows(lines)
    with ThreadPoolExecutor(max_workers=READS_AHEAD, thread_name_prefix="settlement-reads") as readers:
        queued: deque = deque()
        for chunk in _chunked(rows, CHUNK_ROWS):
            keys = [(r.user_id, r.entry_id) for r in chunk if isinstance(r, StatementRow)]
            read = readers.submit(contextvars.copy_context().run, _read_chunk, keys, gateway)
            queued.append((chunk, read))
            if len(queued) > READS_AHEAD:
                chunk, read = queued.popleft()
                _settle(run, chunk, read.result(), done=done)
        while queued:
            chunk, read = queued.popleft()
            _settle(run, chunk, read.result(), done=done)
    start, end = period or (done.tally.first_settled, done.tally.last_settled)
    if start is not None and end is not None:
        _missing_at_provider(run, start, end, done)
        _credited_not_named(run, start, end, done, gateway=gateway)
    done.save(period_start=start, period_end=end)
    return done


def _read_chunk(keys: list[tuple[str, str]], gateway: FirestoreGateway) -> tuple[dict, dict]:
    """A chunk's reads, in a reader thread, ahead of its matching: the amount of
    each named entry, then for the entries not found where the statement says
    the identity marker's wallet (credited elsewhere, or not at all). The
    matching thread then waits on no Firestore call of its own."""
    amounts = gateway.ledger_entry_amounts(keys)
    absent = sorted({entry_id for uid, entry_id in keys if (uid, entry_id) not in amounts})
    return amounts, gateway.identity_owners(absent) if absent else {}


def _chunked(items: Iterator, size: int) -> Iterator[list]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _blank(**values) -> dict:
    return {**EMPTY_ROW, **values}


def _settle(run: SettlementRun, chunk: list, reads: tuple[dict, dict], *, done: Matched) -> None:
    """Classify one chunk (given its reads: `_read_chunk`), store its rows, move the run's counters."""
    amounts, owners = reads
    identities = {r.entry_id for r in chunk if isinstance(r, StatementRow)}
    first_lines = dict(
        SettlementRow.objects.filter(run=run, entry_id__in=identities)
        .values("entry_id")
        .annotate(first=Min("line"))
        .values_list("entry_id", "first")
    )
    results, unresolved, found = [], [], []
    for item in chunk:
        if isinstance(item, Malformed):
            results.append(
                _blank(line=item.line, outcome=Outcome.MALFORMED, detail=item.reason, raw=item.raw)
            )
            if item.payment_id:
                done.malformed_payments.add(events.purchase_entry_id(item.payment_id))
            continue
        row = _row(item)
        results.append(row)
        if item.entry_id in first_lines:
            row["outcome"] = Outcome.DUPLICATE_IN_STATEMENT
            row["detail"] = f"the same {item.type} as line {first_lines[item.entry_id]}"
            continue
        first_lines[item.entry_id] = item.line
        amount = amounts.get((item.user_id, item.entry_id), _ABSENT)
        if amount is _ABSENT:
            unresolved.append((item, row))
        else:
            found.append((item, row, amount))
    if found:
        # The adjustments made for these payments, in one query for the chunk.
        adjusted = change_queries.settling_adjustments(item.entry_id for item, _, _ in found)
        for item, row, amount in found:
            _found(item, row, amount, adjusted.get(item.entry_id))
    if unresolved:
        _not_found(unresolved, owners)
    for row in results:
        done.tally.add(row)
    # The chunk's rows and the run's counters together (and one commit, not one per row).
    with transaction.atomic():
        done.rows.store(results)
        done.save()


def _row(item: StatementRow) -> dict:
    return _blank(
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


def _found(item: StatementRow, row: dict, amount, adjustment: BalanceRequest | None) -> None:
    """The entry is in the wallet the statement names; an applied manual
    adjustment made for this payment counts toward what it was credited."""
    row["ledger_uid"] = item.user_id
    row["ledger_amount"] = amount if is_points(amount) else None
    applied = (
        adjustment.amount
        if adjustment is not None
        and adjustment.state == RequestState.APPLIED
        and adjustment.uid == item.user_id
        else 0
    )
    credited = amount + applied if is_points(amount) else amount
    note = _adjustment_note(adjustment)
    if not item.settled:
        if applied and credited == 0:
            assert adjustment is not None  # applied: an adjustment's
            row["detail"] = (
                f"{item.status} at the provider; the ledger entry's {_shown(amount)} points were taken "
                f"back by manual adjustment #{adjustment.pk} ({signed(applied)}): they agree"
            )
            return
        row["outcome"] = Outcome.NOT_SETTLED
        row["detail"] = f"{item.status} at the provider, yet in the ledger with {_shown(amount)} points{note}"
    elif not is_points(amount) or credited != _expected(item):
        row["outcome"] = Outcome.POINTS_MISMATCH
        row["detail"] = (
            f"the statement says {signed(_expected(item))} points, the ledger entry {_shown(amount)}{note}"
        )
    elif applied:
        assert adjustment is not None  # applied: an adjustment's
        row["detail"] = (
            f"the ledger entry's {_shown(amount)} and manual adjustment #{adjustment.pk} ({signed(applied)}) "
            f"make the statement's {signed(_expected(item))} points"
        )


def _adjustment_note(adjustment: BalanceRequest | None) -> str:
    if adjustment is None:
        return ""
    if adjustment.state == RequestState.APPLIED:
        return (
            f"; manual adjustment #{adjustment.pk} ({adjustment.amount:+,}, wallet {adjustment.uid}) applied"
        )
    return (
        f"; manual adjustment #{adjustment.pk} ({adjustment.amount:+,}) is "
        f"{adjustment.get_state_display().lower()}, not applied yet"
    )


def _shown(amount) -> str:
    return signed(amount) if is_points(amount) else f"malformed ({events.printable(amount)})"


def _not_found(unresolved: list, owners: dict[str, str]) -> None:
    """Rows whose entry is not in the named wallet: credited elsewhere (the
    identity marker, read with the chunk, says where), or not credited at all
    (and then, for a payment, whether a stored delivery could credit it)."""
    missing_payments = []
    for item, row in unresolved:
        owner = owners.get(item.entry_id)
        elsewhere = owner is not None and owner != item.user_id
        if elsewhere:
            row["ledger_uid"] = owner
        if not item.settled:
            if elsewhere:
                row["outcome"] = Outcome.NOT_SETTLED
                row["detail"] = f"{item.status} at the provider, yet credited to wallet {owner}"
            else:
                row["detail"] = f"{item.status} at the provider and not in the ledger: they agree"
        elif elsewhere:
            row["outcome"] = Outcome.USER_MISMATCH
            row["detail"] = f"settled for wallet {item.user_id}, credited to wallet {owner}"
        elif item.type == "payment":
            row["outcome"] = Outcome.MISSING_IN_LEDGER
            missing_payments.append((item, row))
        else:
            row["outcome"] = Outcome.UNREVERSED
            row["detail"] = f"the {item.type} settled; no entry {item.entry_id} in wallet {item.user_id}"
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
            row["delivery_id"], row["replayable"] = same[0][0], True
            row["detail"] = (
                f"settled, never credited; stored delivery {same[0][0]} ({same[0][2]}) holds it: "
                "a replay of it credits the wallet"
            )
        elif candidates:
            row["delivery_id"] = candidates[0][0]
            row["detail"] = (
                f"settled, never credited; the stored delivery {candidates[0][0]} names wallet "
                f"{candidates[0][1]}, not {item.user_id}: not replayable as is"
            )
        else:
            row["detail"] = "settled, never credited, and no delivery of it is stored"


def _missing_at_provider(run: SettlementRun, start: datetime, end: datetime, done: Matched) -> None:
    """Applied payments within [start, end] that no row of the statement names."""
    named = SettlementRow.objects.filter(run=run).exclude(entry_id="").values("entry_id")
    applied = (
        ProviderEventDelivery.objects.filter(
            event_type=events.PAYMENT, status=EventStatus.APPLIED, applied_at__gte=start, applied_at__lte=end
        )
        .exclude(entry_id__in=named)
        .order_by("entry_id", "pk")
        .values_list("pk", "entry_id", "raw", "applied_at")
    )
    batch, last = [], None
    for pk, entry_id, raw, applied_at in applied.iterator(chunk_size=1000):
        if entry_id == last:
            continue  # the same payment delivered twice: one row
        last = entry_id
        if entry_id in done.malformed_payments:
            continue  # in the statement, on a malformed row
        try:
            event = events.parse(raw)
        except events.Unusable:
            continue  # an applied delivery always parses; one that does not was never applied
        batch.append(
            _blank(
                outcome=Outcome.MISSING_AT_PROVIDER,
                type="payment",
                payment_id=event.payment_id,
                user_id=event.user_id,
                points=event.points,
                entry_id=entry_id,
                ledger_uid=event.user_id,
                ledger_amount=event.amount,
                delivery_id=pk,
                detail=f"credited from delivery {pk} on {applied_at:%Y-%m-%d %H:%M} UTC; "
                "not in the statement",
            )
        )
        if len(batch) == CHUNK_ROWS:
            _store_extra(batch, done)
            batch = []
    _store_extra(batch, done)


def _credited_not_named(
    run: SettlementRun, start: datetime, end: datetime, done: Matched, *, gateway: FirestoreGateway
) -> None:
    """Payments the ledger holds as credited within [start, end] (by their
    entries' createdAt), by whatever path, that neither a statement row nor the
    applied deliveries above name: read a page at a time, each page checked
    against the run's rows in one query."""
    credits = gateway.credits_between(start, end)
    for page in _chunked(credits, CHUNK_ROWS):
        identities = {entry_id for _, entry_id, _ in page}
        named = set(
            SettlementRow.objects.filter(run=run, entry_id__in=identities).values_list("entry_id", flat=True)
        )
        named |= done.malformed_payments & identities
        deliveries = {fields.get("deliveryId") for _, _, fields in page}
        stored = set(
            ProviderEventDelivery.objects.filter(
                pk__in=[d for d in deliveries if is_points(d) and d > 0]
            ).values_list("pk", flat=True)
        )
        batch = []
        for uid, entry_id, fields in page:
            if entry_id in named:
                continue
            named.add(entry_id)  # one row per payment, whichever wallets hold it
            batch.append(_credit_row(uid, entry_id, fields, stored))
        _store_extra(batch, done)


def _credit_row(uid: str, entry_id: str, fields: dict, stored: set[int]) -> dict:
    amount = fields.get("amount")
    payment_id = fields.get("paymentId")
    if not isinstance(payment_id, str) or not payment_id:
        payment_id = entry_id.removeprefix("purchase-")
    delivery = fields.get("deliveryId")
    created = fields.get("createdAt")
    source = f"delivery {delivery}" if delivery in stored else f"ledger entry {entry_id}"
    return _blank(
        outcome=Outcome.MISSING_AT_PROVIDER,
        type="payment",
        payment_id=payment_id,
        user_id=uid,
        points=amount if is_points(amount) else None,
        entry_id=entry_id,
        ledger_uid=uid,
        ledger_amount=amount if is_points(amount) else None,
        delivery_id=delivery if delivery in stored else None,
        detail=f"credited {_shown(amount)} points to wallet {uid} from {source} (paid "
        f"{created:%Y-%m-%d %H:%M} UTC); not in the statement",
    )


def _store_extra(batch: list, done: Matched) -> None:
    for row in batch:
        done.tally.add(row, from_statement=False)
    with transaction.atomic():
        done.rows.store(batch)
        done.save()
