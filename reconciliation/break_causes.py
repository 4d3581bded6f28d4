"""The probable cause of a break, from the wallet and its ledger entries.

Computed once, when a break opens (breaks.track_run enqueues the task that
calls break_cause_batches.fill_causes; a break left without one, its task lost with a machine, is
handed to a worker by the minute's sweep, reconciliation/recovery.py): each
wallet read once in a batched read, its ledger entries once (at most
BREAK_CAUSE_MAX_ENTRIES of them, BREAK_CAUSE_CONCURRENCY ledgers at a time).
A guess costs nothing when wrong: a heal still goes through maker-checker.
Entries of ours are named with what wrote them: a delivery's `deliveryId`
(webhook or replay, and its migration), a balance request's entry id
(`revassure-<kind>-<request id>`); rebalances write auditLog records, not
entries, and are found among our applied requests.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Count, Sum
from django.db.models.functions import Abs

from backfill.models import ProviderEventDelivery
from reconciliation.models import (
    OPEN_BREAK_STATES,
    REQUEST_ENTRY,
    BalanceRequest,
    Break,
    ProbableCause,
)
from revassure.firestore import MISSING
from revassure.formatting import signed, when
from revassure.ledger import is_points, reading, superseded_entries

MISSED_LOOKED_AT = 10  # latest entries tried as "the wallet missed its latest entries"
PAIRS_LOOKED_AT = 500  # latest entries searched for two that together account for the delta
NAMED = 5  # entries named in one cause at most
# The fields that make two ledger entries the same business event written twice.
IDENTITY_FIELDS = ("eventId", "paymentId", "type", "refundId", "chargebackId")


@dataclass(frozen=True)
class Cause:
    code: str
    text: str
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Entry:
    entry_id: str
    fields: dict[str, Any]

    @property
    def amount(self) -> Any:
        return self.fields.get("amount", MISSING)

    @property
    def created_at(self) -> datetime | None:
        value = self.fields.get("createdAt")
        return value if isinstance(value, datetime) and value.tzinfo is not None else None


def probable_cause(
    points: Any,
    entries: Iterable[tuple[str, dict[str, Any]]],
    *,
    exists: bool = True,
    writers: dict[str, str] | None = None,
) -> Cause:
    """What the wallet's points and its ledger entries say about the difference,
    tried in this order: a malformed amount (and how much of the delta it
    would explain read as a number); an entry written twice to the ledger; the
    wallet missed its latest entries; the wallet holds an entry's amount too
    many; an entry's sign applied the wrong way; two entries missed, or two too
    many; entries of ours; otherwise unexplained.

    `writers` ({entry id: "written by ..."}) names the entries of ours. Entries
    are ordered by createdAt (those without one first, by id), so "latest" is by
    time. A malformed entry that a correction supersedes is not malformed: it
    counts for nothing and its correction for its amount (evidence
    "corrections" links the two)."""
    writers = writers or {}
    entries = [(entry_id, fields or {}) for entry_id, fields in entries]
    superseded = superseded_entries(entries)
    listed = sorted(
        (Entry(entry_id, fields) for entry_id, fields in entries),
        key=lambda e: (0, e.entry_id, "") if e.created_at is None else (1, e.created_at, e.entry_id),
    )
    points = points if exists else 0
    evidence: dict[str, Any] = {"wallet_points": _json(points), "entries_read": len(listed)}
    if not exists:
        evidence["wallet"] = "missing: its points count as 0"

    def named(*chosen: Entry) -> str:
        evidence["entries"] = [_entry_evidence(e, writers) for e in chosen]
        return ", ".join(_entry_text(e, writers) for e in chosen)

    if superseded:
        amounts = {e.entry_id: e.amount for e in listed}
        evidence["corrections"] = [
            {
                "entry": entry_id,
                "amount": _json(amounts[entry_id]),
                "corrected_by": by,
                "by_amount": amounts[by],
            }
            for entry_id, by in sorted(superseded.items())
        ]
    # newest first
    malformed = [e for e in reversed(listed) if not is_points(e.amount) and e.entry_id not in superseded]
    total = sum(e.amount for e in listed if is_points(e.amount))
    evidence["ledger_sum"] = total
    if not is_points(points):
        return Cause(ProbableCause.MALFORMED_AMOUNT, f"The wallet's points are {_problem(points)}", evidence)
    delta = points - total
    evidence["delta"] = delta
    if malformed:
        return _malformed(malformed, delta, named, evidence)
    if delta == 0:
        evidence["explains"] = 0
        return Cause(
            ProbableCause.UNEXPLAINED,
            f"Unexplained: the wallet and its ledger agreed when read ({points:,} points); "
            "a write probably landed after the run, and the next run will tell",
            evidence,
        )
    # Entries that count, newest first (a superseded entry counts through its correction).
    newest = [e for e in reversed(listed) if e.entry_id not in superseded]
    # The named entries account for the whole delta when a rule below matches.
    evidence["explains"] = delta
    found = _explained(newest, delta, named, len(listed))
    if found is not None:
        return Cause(found[0], found[1], evidence)
    evidence["explains"] = 0
    # A correction of ours is no suspect: it stands for the entry it supersedes,
    # counted as the correction says (the break was opened before it).
    corrections = set(superseded.values())
    ours = [e for e in newest if e.entry_id in writers and e.entry_id not in corrections]
    if ours:
        return Cause(
            ProbableCause.OUR_ENTRY,
            f"No entry explains a delta of {signed(delta)}; entries of ours in the ledger: "
            f"{named(*ours[:NAMED])}",
            evidence,
        )
    return Cause(
        ProbableCause.UNEXPLAINED,
        f"Unexplained: no entry, pair of entries or run of latest entries accounts for a delta of "
        f"{signed(delta)} ({len(listed)} entries read)",
        evidence,
    )


def _explained(newest: list[Entry], delta: int, named, count: int) -> tuple[str, str] | None:
    """(code, text) of the first rule whose named entries account for the whole
    delta, newest entries first: an entry written twice to the ledger (first: a
    copy that is the newest entry looks like a missed one, and is likelier); the
    latest entries missed by the wallet; one entry too many in the wallet; a
    sign applied the wrong way; two entries missed, or two too many, anywhere
    among the latest PAIRS_LOOKED_AT. None when none does."""
    copies = _copies(newest)
    if copies and -sum(copy.amount for copy, _ in copies) == delta:
        first_copy, original = copies[0]
        more = f" (and {len(copies) - 1} more)" if len(copies) > 1 else ""
        named(*[copy for copy, _ in copies[:NAMED]])
        return (
            ProbableCause.DUPLICATED_ENTRY,
            f"Entry {_entry_text(first_copy, {})} repeats {original.entry_id}, the same event written "
            f"twice to the ledger{more}",
        )
    missed = 0
    for k, entry in enumerate(newest[:MISSED_LOOKED_AT], start=1):
        missed += entry.amount
        if delta == -missed:
            what = "entry" if k == 1 else f"its latest {k} entries:"
            return ProbableCause.MISSED_ENTRIES, f"The wallet missed {what} {named(*newest[:k])} of {count}"
    for entry in newest:
        if entry.amount == delta:
            return (
                ProbableCause.EXTRA_IN_WALLET,
                f"Entry {named(entry)} is missing from the ledger or was counted twice in the wallet",
            )
    for entry in newest:
        if entry.amount != 0 and delta == -2 * entry.amount:
            return ProbableCause.WRONG_SIGN, f"Sign of entry {named(entry)} applied the wrong way"
    pair = _pair(newest[:PAIRS_LOOKED_AT], -delta)
    if pair is not None:
        return ProbableCause.MISSED_ENTRIES, f"The wallet missed two entries: {named(*pair)} of {count}"
    pair = _pair(newest[:PAIRS_LOOKED_AT], delta)
    if pair is not None:
        return (
            ProbableCause.EXTRA_IN_WALLET,
            f"Entries {named(*pair)} are missing from the ledger or were counted twice in the wallet",
        )
    return None


def _copies(newest: list[Entry]) -> list[tuple[Entry, Entry]]:
    """(copy, original) for each entry that repeats an older one's business
    event (same event id, or same payment, type and refund or chargeback),
    newest copy first."""
    seen: dict[tuple, Entry] = {}
    copies = []
    for entry in reversed(newest):  # oldest first: the first written is the original
        keys = [("event", entry.fields["eventId"])] if entry.fields.get("eventId") else []
        if entry.fields.get("paymentId"):
            keys.append(tuple(_json(entry.fields.get(name)) for name in IDENTITY_FIELDS[1:]))
        original = next((seen[key] for key in keys if key in seen), None)
        if original is not None:
            copies.append((entry, original))
        else:
            seen.update((key, entry) for key in keys)
    return list(reversed(copies))


def _pair(entries: list[Entry], target: int) -> tuple[Entry, Entry] | None:
    """Two of the entries (newest first) whose amounts add up to `target`: the
    pair with the newest entry, or None."""
    last_at: dict[int, int] = {}  # amount -> position of its oldest entry
    for position, entry in enumerate(entries):
        last_at[entry.amount] = position
    for position, entry in enumerate(entries):
        other = last_at.get(target - entry.amount)
        if other is not None and other > position:
            return entry, entries[other]
    return None


def _malformed(malformed: list[Entry], delta: int, named, evidence: dict[str, Any]) -> Cause:
    """A malformed amount counts as nothing in the ledger sum; when it reads as
    a number ("120", 120.0) it says how much of the delta it would explain."""
    more = f" (and {len(malformed) - 1} more)" if len(malformed) > 1 else ""
    named(*malformed[:NAMED])
    readings = [reading for e in malformed if (reading := _as_number(e.amount)) is not None]
    explains = sum(readings)
    evidence["explains"] = explains
    text = f"Entry {malformed[0].entry_id}: amount is {_problem(malformed[0].amount)}{more}"
    read_as = "read as numbers they explain" if len(readings) > 1 else "read as a number it explains"
    if not readings:
        text += f"; not a number, so it explains none of the {signed(delta)}"
    elif explains == delta:
        text += f"; {read_as} the whole {signed(delta)}"
    else:
        text += f"; {read_as} {signed(explains)} of the {signed(delta)}"
    return Cause(ProbableCause.MALFORMED_AMOUNT, text, evidence)


def _as_number(value: Any) -> int | None:
    """An amount a person would read as whole points: "120", " -5 ", 120.0."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return reading(value)


EXPLAINING = (
    ProbableCause.MISSED_ENTRIES,
    ProbableCause.EXTRA_IN_WALLET,
    ProbableCause.WRONG_SIGN,
    ProbableCause.DUPLICATED_ENTRY,
)


def as_json(code: str, text: str, evidence: dict[str, Any]) -> dict[str, Any] | None:
    """A computed cause as `breaks --json` gives it (None while not computed):
    its code and summary, the entries it names (id, amount, created_at, type,
    written_by), the delta when it was read (wallet points minus ledger sum;
    None when an amount or the points are malformed) and how many points of
    that delta the named entries explain (all of it for missed entries, an
    entry too many and a wrong sign; 0 when nothing explains it; None when
    the delta is unknown)."""
    if not code:
        return None
    delta = evidence.get("delta")
    if "explains" in evidence:
        explains = evidence["explains"]
    else:  # computed before causes recorded it: the rule that matched says
        explains = None if delta is None else delta if code in EXPLAINING else 0
    return {
        "code": code,
        "summary": text,
        "entries": list(evidence.get("entries", [])),
        "explains": explains,
        "delta": delta,
    }


def shares() -> dict[str, Any]:
    """What explains the open breaks, cause by cause: {"open": how many are open,
    "causes": [{"code", "label", "breaks", "share" (of the open breaks, a
    whole percent), "at_stake" (the sum of their absolute deltas)}], most
    breaks first, "not computed yet" among them when some wait for the task}."""
    open_breaks = Break.objects.filter(status__in=OPEN_BREAK_STATES)
    total = open_breaks.count()
    rows = (
        open_breaks.values("cause")
        .annotate(breaks=Count("id"), at_stake=Sum(Abs("delta")))
        .order_by("-breaks", "cause")
    )
    labels = dict(ProbableCause.choices)
    return {
        "open": total,
        "causes": [
            {
                "code": row["cause"] or "pending",
                "label": labels.get(row["cause"], row["cause"]) if row["cause"] else "not computed yet",
                "breaks": row["breaks"],
                "share": round(100 * row["breaks"] / total),
                "at_stake": row["at_stake"] or 0,
            }
            for row in rows
        ],
    }


def _problem(value: Any) -> str:
    if value is MISSING:
        return "missing"
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"a string ({value!r:.60})"
    if isinstance(value, float):
        return f"not an integer ({value!r})"
    return f"a {type(value).__name__} ({value!r:.60})"


def _json(value: Any) -> Any:
    if value is MISSING:
        return None
    return value if value is None or isinstance(value, bool | int | float | str) else repr(value)[:120]


def _entry_text(entry: Entry, writers: dict[str, str]) -> str:
    amount = signed(entry.amount) if is_points(entry.amount) else _problem(entry.amount)
    parts = [amount, when(entry.created_at) if entry.created_at else "no createdAt"]
    if entry.entry_id in writers:
        parts.append(writers[entry.entry_id])
    return f"{entry.entry_id} ({', '.join(parts)})"


def _entry_evidence(entry: Entry, writers: dict[str, str]) -> dict[str, Any]:
    return {
        "id": entry.entry_id,
        "amount": _json(entry.amount),
        "created_at": entry.created_at.isoformat() if entry.created_at else None,
        "type": _json(entry.fields.get("type")),
        "written_by": writers.get(entry.entry_id, ""),
    }


def writers_of(entries: Iterable[tuple[str, dict[str, Any]]]) -> dict[str, str]:
    """{entry id: "written by ..."} for the entries of ours: a delivery's (webhook
    or replay, and its migration; reversals said so) or a balance request's (heal
    or manual adjustment). Two queries."""
    entries = [(entry_id, fields or {}) for entry_id, fields in entries]
    delivery_ids = {f["deliveryId"] for _, f in entries if type(f.get("deliveryId")) is int}
    request_ids = {int(m.group(2)) for entry_id, _ in entries if (m := REQUEST_ENTRY.match(entry_id))}
    deliveries = ProviderEventDelivery.objects.in_bulk(delivery_ids) if delivery_ids else {}
    requests = BalanceRequest.objects.in_bulk(request_ids) if request_ids else {}
    found = {}
    for entry_id, fields in entries:
        delivery_id = fields.get("deliveryId")
        match = REQUEST_ENTRY.match(entry_id)
        if type(delivery_id) is int and delivery_id in deliveries:
            delivery = deliveries[delivery_id]
            what = "reversal" if fields.get("type") == "reversal" else delivery.get_source_display()
            by = f"migration {delivery.migration_id}" if delivery.migration_id else "webhook"
            found[entry_id] = f"written by {by} ({what}, delivery {delivery.pk})"
        elif match and int(match.group(2)) in requests:
            request = requests[int(match.group(2))]
            found[entry_id] = f"written by request {request.pk} ({request.get_kind_display()})"
    return found
