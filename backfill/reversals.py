"""Reversal backfill from the CSV finance exports:

    payment_id,refund_id,chargeback_id,user_id,points,created

Each row becomes a provider event envelope (a refund or a chargeback, by which
id is filled) and goes through the replay: the same rules, the same outcomes.
Nothing is coerced: points are an integer only when written in ASCII digits
with an optional sign (no superscripts, full-width or Arabic-Indic digits,
which Python's int() would silently read) and within a ledger's 64-bit range;
any other cell stays as written, so the replay quarantines the row with the
reason, and the row is listed in `rejected` with its line. One bad row never
stops the rows around it.

A header written with a byte order mark (as Excel writes UTF-8) is read as
without one. The n-th line yielded is the CSV's n-th line (the header and the
further lines of a quoted multi-line cell yield blank lines, which the replay
counts but skips), so a delivery's `line` is the line of the CSV.
"""

import csv
import json
import re
from collections.abc import Iterable, Iterator

COLUMNS = ("payment_id", "refund_id", "chargeback_id", "user_id", "points", "created")
BOM = "\ufeff"
# re's [0-9] is ASCII-only, unlike \d or str.isdigit(); fullmatch, since $ lets a newline through.
_INTEGER = re.compile(r"[+-]?[0-9]+")
_INT64 = range(-(2**63), 2**63)
_MAX_DIGITS = 19  # more digits than that is out of range anyway; int() of a huge string is slow or refused


class BadCsv(Exception):
    pass


def read_points(cell: str) -> tuple[int | str, str]:
    """(the integer, "") for a whole number in ASCII digits within 64 bits, else
    (the cell as written, why it is not one)."""
    if not _INTEGER.fullmatch(cell):
        return cell, f"points {cell!r} is not a whole number in ASCII digits"
    if len(cell.lstrip("+-").lstrip("0")) > _MAX_DIGITS or int(cell) not in _INT64:
        shown = cell if len(cell) <= 40 else cell[:39] + "…"
        return cell, f"points {shown!r} are out of range (a ledger amount is a 64-bit integer)"
    return int(cell), ""


def csv_to_event_lines(rows: Iterable[str], *, rejected: list | None = None) -> Iterator[str]:
    """Event lines (JSON) for the CSV's rows, line for line; `rejected`, when
    given, receives (line, reason) for each row whose points are not read."""
    reader = csv.reader(_without_bom(rows))
    header = [name.strip() for name in next(reader, [])]
    missing = set(COLUMNS) - set(header)
    if missing:
        raise BadCsv(f"the CSV lacks the columns {', '.join(sorted(missing))}")
    yield from [""] * reader.line_num
    done = reader.line_num
    for record in reader:
        line, done = done + 1, reader.line_num
        if record:
            row = dict(zip(header, record, strict=False))
            yield _event_line(row, line, rejected)
        yield from [""] * (done - line + (0 if record else 1))


def _event_line(row: dict, line: int, rejected: list | None) -> str:
    refund, chargeback = (row.get("refund_id") or "").strip(), (row.get("chargeback_id") or "").strip()
    if bool(refund) == bool(chargeback):
        kind, reversal = "reversal (needs exactly one of refund_id and chargeback_id)", {}
    elif refund:
        kind, reversal = "payment.refunded", {"refund_id": refund}
    else:
        kind, reversal = "payment.chargeback", {"chargeback_id": chargeback}
    points, problem = read_points((row.get("points") or "").strip())
    if problem and rejected is not None:
        rejected.append((line, problem))
    data = {
        "payment_id": (row.get("payment_id") or "").strip(),
        "user_id": (row.get("user_id") or "").strip(),
        "points": points,
        **reversal,
    }
    event_id = f"csv-{refund or chargeback or f'row-{line}'}"
    return json.dumps(
        {"id": event_id, "type": kind, "created": (row.get("created") or "").strip(), "data": data}
    )


def _without_bom(rows: Iterable[str]) -> Iterator[str]:
    rows = iter(rows)
    first = next(rows, None)
    if first is not None:
        yield first.removeprefix(BOM)
        yield from rows
