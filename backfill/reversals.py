"""Reversal backfill from the CSV finance exports:

    payment_id,refund_id,chargeback_id,user_id,points,created

Each row becomes a provider event envelope (a refund or a chargeback, by which
id is filled) and goes through the replay: the same rules, the same outcomes.
Nothing is coerced: points that are not a plain whole number stay as written
and the row is quarantined with the reason.
"""

import csv
import json
from collections.abc import Iterable, Iterator

COLUMNS = ("payment_id", "refund_id", "chargeback_id", "user_id", "points", "created")


class BadCsv(Exception):
    pass


def csv_to_event_lines(rows: Iterable[str]) -> Iterator[str]:
    reader = csv.DictReader(rows)
    missing = set(COLUMNS) - set(reader.fieldnames or [])
    if missing:
        raise BadCsv(f"the CSV lacks the columns {', '.join(sorted(missing))}")
    for number, row in enumerate(reader, start=2):
        refund, chargeback = (row.get("refund_id") or "").strip(), (row.get("chargeback_id") or "").strip()
        if bool(refund) == bool(chargeback):
            kind, reversal = "reversal (needs exactly one of refund_id and chargeback_id)", {}
        elif refund:
            kind, reversal = "payment.refunded", {"refund_id": refund}
        else:
            kind, reversal = "payment.chargeback", {"chargeback_id": chargeback}
        points = (row.get("points") or "").strip()
        data = {
            "payment_id": (row.get("payment_id") or "").strip(),
            "user_id": (row.get("user_id") or "").strip(),
            "points": int(points) if points.isdigit() else points,
            **reversal,
        }
        event_id = f"csv-{refund or chargeback or f'row-{number}'}"
        yield json.dumps(
            {"id": event_id, "type": kind, "created": (row.get("created") or "").strip(), "data": data}
        )
