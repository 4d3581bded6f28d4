"""A settlement row's canonical record: the columns a report seals, the same
whether the row is about to be stored (a dict built by matching) or read back
(values from the database), so the checksum made while storing is the one
verify_reports recomputes. Each record is hashed as one canonical line
(revassure.sealing.canonical.line)."""

from __future__ import annotations

from datetime import UTC
from decimal import Decimal
from operator import itemgetter

# The columns of SettlementRow a report holds, in their order (besides run and id).
COLUMNS = (
    "line",
    "outcome",
    "type",
    "payment_id",
    "reference",
    "user_id",
    "points",
    "amount",
    "currency",
    "status",
    "settled_at",
    "entry_id",
    "ledger_uid",
    "ledger_amount",
    "delivery_id",
    "replayable",
    "detail",
    "raw",
)
EMPTY_ROW = {
    **dict.fromkeys(COLUMNS, ""),
    **dict.fromkeys(("line", "points", "amount", "settled_at", "ledger_amount", "delivery_id"), None),
    "replayable": False,
}


def decimal_text(value: Decimal | None) -> str | None:
    """A Decimal as exact text without trailing zeros (10.50 and 10.500000 are
    both "10.5"; a negative zero is "0")."""
    return None if value is None else f"{(value + 0).normalize():f}"


# A row's values of COLUMNS, in their order (a dict built by matching).
column_values = itemgetter(*COLUMNS)


def record(row: dict) -> dict:
    """The row's canonical record (a stored row's values or matching's dict)."""
    data = dict(zip(COLUMNS, column_values(row), strict=True))
    data["amount"] = decimal_text(data["amount"])
    settled_at = data["settled_at"]
    data["settled_at"] = settled_at.astimezone(UTC).isoformat() if settled_at else None
    return data
