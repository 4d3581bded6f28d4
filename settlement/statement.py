"""PayNow's settlement statement: a CSV read row by row, every row checked.

    type,payment_id,reference,user_id,points,amount,currency,status,settled_at

`type` is payment | refund | chargeback; `reference` is the refund or
chargeback id (empty for a payment); `points` a positive whole number in ASCII
digits (backfill.reversals.read_points: the rule every intake of points uses);
`amount` a decimal in the currency's units, ASCII digits with an optional sign
and at most DECIMAL_PLACES decimals (kept exactly as a Decimal, never a float);
`currency` three capital letters; `status` settled | pending | failed;
`settled_at` ISO 8601 with a time zone (required when settled). Columns the
statement has beyond these are kept in the file and ignored.

A row that breaks any rule is yielded as `Malformed` with its line (the line it
starts on), the reason and its payment id when that can still be read; it never
stops the rows after it. A quoted cell may run over a few lines (MAX_RECORD_LINES),
but only into a valid row: a quote that does not close on its line and does not
make one (a stray quote) makes that one line malformed, and the lines after it
are read as rows of their own. A file whose header lacks a column, or names one
twice (which of the two would count?), is refused as a whole (BadStatement),
before any row.
"""

from __future__ import annotations

import csv
import re
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TextIO

from backfill import events, reversals
from revassure.policy import MAX_POINTS
from revassure.refusals import Refused
from revassure.timezones import OUT_OF_RANGE, in_utc

COLUMNS = (
    "type",
    "payment_id",
    "reference",
    "user_id",
    "points",
    "amount",
    "currency",
    "status",
    "settled_at",
)
TYPES = {"payment": events.PAYMENT, "refund": events.REFUND, "chargeback": events.CHARGEBACK}
SETTLED = "settled"
STATUSES = (SETTLED, "pending", "failed")
DECIMAL_PLACES = 6  # what a SettlementRow stores exactly; more is refused, not rounded
# Significant digits an amount may have: SQLite keeps a decimal column as a
# double (15 digits exact), so a longer amount would come back altered.
SIGNIFICANT_DIGITS = 15
INTEGER_DIGITS = 18  # the column's max_digits (24) less its decimal places
_AMOUNT = re.compile(r"[+-]?([0-9]+)(?:\.([0-9]+))?")  # [0-9] is ASCII only, unlike \d
_CURRENCY = re.compile(r"[A-Z]{3}")
RAW_LIMIT = 500  # characters of a malformed row kept to show
# Lines a record may span (a quoted cell holding line breaks); a quote still open
# past them is a stray one, however far its closing quote would be.
MAX_RECORD_LINES = 10


class BadStatement(Refused, ValueError):
    """The file cannot be a settlement statement at all; the message says why."""


@dataclass(frozen=True, slots=True)
class StatementRow:
    line: int
    type: str  # payment | refund | chargeback, as the statement says
    payment_id: str
    reference: str
    user_id: str
    points: int
    amount: Decimal
    currency: str
    status: str
    settled_at: datetime | None
    # The ledger entry this row's business identity credits (or reverses with).
    entry_id: str

    @property
    def settled(self) -> bool:
        return self.status == SETTLED


@dataclass(frozen=True, slots=True)
class Malformed:
    line: int
    reason: str
    raw: str
    # The payment the row names, when its type is not a reversal and its
    # payment_id cell can still be read: the statement holds that payment, so
    # matching never reports it missing at the provider.
    payment_id: str = ""


def open_rows(path: Path | str) -> TextIO:
    """The file as text lines for read_rows: UTF-8 (a byte order mark, as Excel
    writes, ignored); bytes that are not UTF-8 become U+FFFD, and the rows
    holding them are reported malformed, so one bad byte never stops the file."""
    return open(path, newline="", encoding="utf-8-sig", errors="replace")


def read_rows(lines: Iterable[str]) -> Iterator[StatementRow | Malformed]:
    """Each record of the statement, checked, in file order (blank lines skipped)."""
    feed = _Lines(lines)
    reader = csv.reader(feed)
    try:
        header = next(reader)
    except StopIteration:
        raise BadStatement("the file is empty") from None
    except (csv.Error, _Unclosed) as exc:
        raise BadStatement(f"the header line is not CSV: {exc or 'a quote is not closed'}") from exc
    if len(feed.record) > 1:
        raise BadStatement("the header line has a quote that is not closed on it")
    header = [name.strip().removeprefix(reversals.BOM) for name in header]
    missing = [name for name in COLUMNS if name not in header]
    if missing:
        raise BadStatement(
            f"the header lacks the columns {', '.join(missing)} (expected at least: {','.join(COLUMNS)})"
        )
    twice = sorted(name for name, n in Counter(header).items() if name and n > 1)
    if twice:
        raise BadStatement(
            f"the header names the column{'s' if len(twice) > 1 else ''} {', '.join(twice)} more than "
            "once: which one holds the value is ambiguous, so the file is not read"
        )
    position = {name: header.index(name) for name in COLUMNS}
    while True:
        line = feed.start()
        try:
            record = next(reader)
        except StopIteration:
            return
        except _Unclosed:
            yield _stray_quote(feed, line, position)
            continue
        except csv.Error as exc:
            if len(feed.record) > 1:
                yield _stray_quote(feed, line, position)
            else:
                yield Malformed(line, f"not a CSV row: {exc}", "", _payment_of(feed.record[0], position))
            continue
        if not record or record == [""]:
            continue
        row = check(record, line, header, position)
        if isinstance(row, Malformed) and len(feed.record) > 1:
            # Read over several lines it is no row: the quote was a stray one.
            yield _stray_quote(feed, line, position)
            continue
        yield row


class _Unclosed(Exception):
    """A record still open after MAX_RECORD_LINES lines."""


class _Lines:
    """The file's lines for csv.reader, counted, keeping those of the record
    being read so that all but its first can be handed out again."""

    def __init__(self, lines: Iterable[str]):
        self.source = iter(lines)
        self.again: deque[str] = deque()
        self.number = 0  # lines handed out
        self.record: list[str] = []

    def __iter__(self):
        return self

    def __next__(self) -> str:
        if len(self.record) >= MAX_RECORD_LINES:
            raise _Unclosed
        text = self.again.popleft() if self.again else next(self.source)
        self.number += 1
        self.record.append(text)
        return text

    def start(self) -> int:
        """Begin a record; the number of the line it starts on."""
        self.record = []
        return self.number + 1

    def give_back(self) -> None:
        """Every line of the record but its first, to be read again."""
        rest = self.record[1:]
        self.again.extendleft(reversed(rest))
        self.number -= len(rest)
        self.record = self.record[:1]


def _stray_quote(feed: _Lines, line: int, position: dict[str, int]) -> Malformed:
    """The record's first line as malformed; the lines after it go back to be read as rows."""
    feed.give_back()
    text = feed.record[0].rstrip("\r\n")
    return Malformed(
        line,
        "a quote opened on this line does not close on it into a valid row (a stray quote?); "
        "the lines after it are read as rows of their own",
        _shown(text),
        _payment_of(text, position),
    )


def _payment_of(text: str, position: dict[str, int]) -> str:
    """The payment id a malformed line names, when it can be read ("" if not)."""
    try:
        cells = next(csv.reader([text]), [])
    except csv.Error:
        return ""
    return _payment_in(cells, position)


def _payment_in(record: list[str], position: dict[str, int]) -> str:
    if position["payment_id"] >= len(record):
        return ""
    kind = record[position["type"]].strip() if position["type"] < len(record) else ""
    payment_id = record[position["payment_id"]].strip()
    if kind in ("refund", "chargeback") or not events.ID_PATTERN.fullmatch(payment_id):
        return ""
    return payment_id


def check(
    record: list[str], line: int, header: list[str], position: dict[str, int]
) -> StatementRow | Malformed:
    """One record as a StatementRow, or Malformed with the first reason found."""
    if len(record) != len(header):
        return _malformed(record, line, f"{len(record)} fields where the header has {len(header)}", position)
    if any("\ufffd" in cell for cell in record):
        return _malformed(record, line, "not UTF-8 text", position)
    cell = {name: record[index].strip() for name, index in position.items()}
    try:
        kind = cell["type"]
        if kind not in TYPES:
            raise _Bad(f"unknown type {events.printable(kind)} (payment, refund or chargeback)")
        payment_id = _identifier(cell, "payment_id")
        user_id = _identifier(cell, "user_id")
        reference = cell["reference"]
        if kind == "payment":
            if reference:
                raise _Bad("a payment's reference must be empty (it names a refund or a chargeback)")
        else:
            reference = _identifier(cell, "reference")
        points = _points(cell["points"])
        amount = _amount(cell["amount"])
        currency = cell["currency"]
        if not _CURRENCY.fullmatch(currency):
            raise _Bad(f"currency {events.printable(currency)} is not three capital letters (ISO 4217)")
        status = cell["status"]
        if status not in STATUSES:
            raise _Bad(f"unknown status {events.printable(status)} (settled, pending or failed)")
        settled_at = _time(cell["settled_at"], required=status == SETTLED)
    except _Bad as exc:
        return _malformed(record, line, str(exc), position)
    entry_id = events.entry_id_of(TYPES[kind], payment_id, reference)
    return StatementRow(
        line, kind, payment_id, reference, user_id, points, amount, currency, status, settled_at, entry_id
    )


def _malformed(record: list[str], line: int, reason: str, position: dict[str, int]) -> Malformed:
    return Malformed(line, reason, _shown(",".join(record)), _payment_in(record, position))


class _Bad(Exception):
    pass


def _identifier(cell: dict[str, str], name: str) -> str:
    value = cell[name]
    if not events.ID_PATTERN.fullmatch(value):
        raise _Bad(f"missing or malformed {name} {events.printable(value)}")
    return value


def _points(text: str) -> int:
    value, problem = reversals.read_points(text)
    if problem:
        raise _Bad(problem)
    assert isinstance(value, int)  # read without a problem: the integer
    if value <= 0:
        raise _Bad(f"points must be positive, got {value}")
    if value > MAX_POINTS:
        raise _Bad(f"points {value} are above the largest amount a ledger holds")
    return value


def _amount(text: str) -> Decimal:
    match = _AMOUNT.fullmatch(text)
    if not match:
        raise _Bad(f"amount {events.printable(text)} is not a decimal in ASCII digits (like 12.50)")
    whole, fraction = match.group(1), match.group(2) or ""
    if len(fraction) > DECIMAL_PLACES:
        raise _Bad(f"amount {text} has more than {DECIMAL_PLACES} decimal places")
    if len(whole.lstrip("0")) > INTEGER_DIGITS:
        raise _Bad(f"amount {events.printable(text)} is out of range")
    if len((whole + fraction).lstrip("0").rstrip("0")) > SIGNIFICANT_DIGITS:
        raise _Bad(f"amount {events.printable(text)} has more than {SIGNIFICANT_DIGITS} significant digits")
    return Decimal(text)


def _time(text: str, *, required: bool) -> datetime | None:
    if not text:
        if required:
            raise _Bad("a settled row needs its settled_at time")
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise _Bad(f"settled_at {events.printable(text)} is not an ISO 8601 time") from None
    if value.tzinfo is None:
        raise _Bad(f"settled_at {events.printable(text)} has no time zone")
    utc = in_utc(value)  # every time is compared and stored in UTC
    if utc is None:
        raise _Bad(f"settled_at {events.printable(text)} {OUT_OF_RANGE}")
    return utc


def _shown(text: str) -> str:
    text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
    return text if len(text) <= RAW_LIMIT else text[: RAW_LIMIT - 1] + "…"
