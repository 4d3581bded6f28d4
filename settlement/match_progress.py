"""What a statement's matching (settlement/matching.py) has done so far: the run's tally (counts and
totals, bounded), its outcome rows stored in bulk and hashed in the order stored (reports.seal takes
the digest), and saving the counters only while the run is still this process's (RunTakenOver
otherwise)."""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import connection

from revassure.sealing.canonical import line
from settlement.models import OUTCOMES, Outcome, RunStatus, RunTakenOver, SettlementRow, SettlementRun
from settlement.records import COLUMNS, column_values, record


@dataclass
class Tally:
    """The run's counts and totals so far (bounded: one entry per outcome and currency)."""

    rows: int = 0
    counts: Counter = field(default_factory=Counter)
    points: Counter = field(default_factory=Counter)
    money: dict = field(default_factory=lambda: defaultdict(lambda: defaultdict(Decimal)))
    first_settled: datetime | None = None
    last_settled: datetime | None = None

    def add(self, row: dict, *, from_statement: bool = True) -> None:
        outcome = row["outcome"]
        self.rows += from_statement
        self.counts[outcome] += 1
        if outcome == Outcome.MALFORMED:
            return
        self.points[outcome] += row["points"] or 0
        if row["amount"] is not None:
            self.money[outcome][row["currency"]] += row["amount"]
        settled_at = row["settled_at"]
        if settled_at is not None:
            if self.first_settled is None or settled_at < self.first_settled:
                self.first_settled = settled_at
            if self.last_settled is None or settled_at > self.last_settled:
                self.last_settled = settled_at

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


@dataclass
class Matched:
    tally: Tally
    rows: Rows
    run: SettlementRun
    # Entry ids of the payments malformed rows name: in the statement, though not matched.
    malformed_payments: set[str] = field(default_factory=set)

    def save(self, **fields: Any) -> None:
        """The run's counters (and `fields`), if the run is still this process's;
        RunTakenOver otherwise (inside a transaction: what it stored goes too)."""
        held = SettlementRun.objects.filter(
            pk=self.run.pk, worker=self.run.worker, status__in=(RunStatus.RUNNING, RunStatus.DRY_RUN)
        )
        if not held.update(**self.tally.fields(), **fields):
            raise RunTakenOver(f"settlement run {self.run.pk} was taken over by another worker")


class Rows:
    """Stores outcome rows in bulk (one INSERT statement run for many rows,
    without building model instances: most of a run's own cost otherwise) and
    hashes their canonical lines in the order they are stored."""

    def __init__(self, run_id: int):
        self.run_id = run_id
        self.digest = hashlib.sha256()
        qn = connection.ops.quote_name
        columns = ["run_id", *COLUMNS]
        self.sql = (
            f"INSERT INTO {qn(SettlementRow._meta.db_table)} ({', '.join(qn(c) for c in columns)}) "
            f"VALUES ({', '.join(['%s'] * len(columns))})"
        )
        # Values that need the database's own form (times, decimals): the
        # backend's adapters, as the fields' get_db_prep_save would call them,
        # by their place in a row's values (the run's id first).
        amount = SettlementRow._meta.get_field("amount")
        self.prepared = (
            (1 + COLUMNS.index("settled_at"), connection.ops.adapt_datetimefield_value),
            (
                1 + COLUMNS.index("amount"),
                lambda value: connection.ops.adapt_decimalfield_value(
                    value, amount.max_digits, amount.decimal_places
                ),
            ),
        )

    def store(self, rows: list[dict]) -> None:
        if not rows:
            return
        params = []
        for row in rows:
            self.digest.update(line(record(row)))
            values = [self.run_id, *column_values(row)]
            for at, prepare in self.prepared:
                if values[at] is not None:
                    values[at] = prepare(values[at])
            params.append(values)
        with connection.cursor() as cursor:
            cursor.executemany(self.sql, params)

    def hexdigest(self) -> str:
        return self.digest.hexdigest()
