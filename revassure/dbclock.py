"""The database's clock, for leases: every machine judges a lease by one clock.

Machines' clocks differ by seconds (NTP keeps them close, not equal). A lease
written and judged with each machine's own `timezone.now()` would lapse early
for a machine whose clock runs ahead (it would take a lease its holder still
uses) and late for one behind (a dead worker's lease would stay taken). So a
lease is taken, renewed and judged in SQL, with the database's time: these
expressions go into the conditional updates and filters, never through Python.
On PostgreSQL that is the server's clock (STATEMENT_TIMESTAMP()); on SQLite,
which one machine uses, the machine's own.
"""

from __future__ import annotations

from datetime import timedelta

from django.db.models import DateTimeField, ExpressionWrapper, Value
from django.db.models.functions import Now


def now() -> Now:
    """The database's time, when the statement runs."""
    return Now()


def ago(seconds: float | timedelta) -> ExpressionWrapper:
    """The database's time, `seconds` ago."""
    return _shifted(-_delta(seconds))


def ahead(seconds: float | timedelta) -> ExpressionWrapper:
    """The database's time, `seconds` from now."""
    return _shifted(_delta(seconds))


def _delta(seconds: float | timedelta) -> timedelta:
    return seconds if isinstance(seconds, timedelta) else timedelta(seconds=seconds)


def _shifted(delta: timedelta) -> ExpressionWrapper:
    return ExpressionWrapper(Now() + Value(delta), output_field=DateTimeField())
