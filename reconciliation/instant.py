"""One instant: the read time T0 of a run, or why the run reads live.

A run picks T0 (the server's present) when it starts, before it reads
anything, and every listing, wallet read and ledger aggregation of the run is
made as of T0, whichever worker runs its chunks: the run row holds T0 and each
chunk reads it there. Firestore keeps the versions a read at T0 needs for its
read-time window (an hour; seven days, at whole minutes, with point-in-time
recovery: FIRESTORE_PITR_ENABLED). So a run reads live instead, and records
why, when

- reads at a point in time are switched off (RECONCILE_POINT_IN_TIME),
- the backend cannot read at a point in time (our npm emulator), or
- the run is expected to outlast the window: its wallets (the scope, or a
  count aggregation) over the rate of the last full run, or
  RECONCILE_EXPECTED_RATE before there is one, with a margin (SAFETY).

Candidates are still re-checked live, in a transaction; `first_read` is what
the run saw at T0, recorded beside the re-check (wallet_checks.check_wallets).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings

from reconciliation.models import ReadMode, ReconciliationRun, RunStatus
from revassure.firestore import FirestoreGateway, LedgerTotals
from revassure.ledger import balances_agree, is_points

log = logging.getLogger(__name__)

WINDOW = timedelta(hours=1)  # Firestore keeps every version this long
PITR_WINDOW = timedelta(days=7)  # with point-in-time recovery, at whole minutes
# A run is expected to take this many times its estimate at most (queue waits,
# slower aggregations): a run whose margin passes the window reads live.
SAFETY = 1.5
# A run's rate predicts the next one's only past its fixed costs: smaller runs are not taken.
OBSERVED_MIN_WALLETS = 10_000


@dataclass(frozen=True)
class ReadPlan:
    mode: ReadMode
    read_time: datetime | None  # T0, for a point-in-time run
    reason: str  # why live, or how long the run is expected to take


def read_window() -> timedelta:
    """How far back Firestore can read: what a run and its re-derivation must stay within."""
    return PITR_WINDOW if settings.FIRESTORE_PITR_ENABLED else WINDOW


def plan_reads(run: ReconciliationRun, gateway: FirestoreGateway) -> ReadPlan:
    """Choose how `run` reads: at T0 (the server's present), or live and why."""
    if not settings.RECONCILE_POINT_IN_TIME:
        return ReadPlan(
            ReadMode.LIVE, None, "reads at a point in time are switched off (RECONCILE_POINT_IN_TIME)"
        )
    support = gateway.read_time_support()
    if not support.supported:
        return ReadPlan(ReadMode.LIVE, None, f"{support.reason}: this run reads live")
    wallets = len(run.scope_uids) if run.scope_uids else gateway.count_wallets()
    rate, source = expected_rate()
    expected = timedelta(seconds=wallets / rate)
    window = read_window()
    expectation = f"{wallets:,} wallets at {_rate(rate)} wallets/s ({source}): about {_duration(expected)}"
    if expected * SAFETY > window:
        return ReadPlan(
            ReadMode.LIVE,
            None,
            f"{expectation}, which with a margin of {SAFETY}x would outlast the {_duration(window)} "
            "read-time window"
            + ("" if settings.FIRESTORE_PITR_ENABLED else " (FIRESTORE_PITR_ENABLED makes it 7 days)")
            + ": this run reads live",
        )
    read_time = gateway.server_time()
    if settings.FIRESTORE_PITR_ENABLED:
        # Past the last hour Firestore reads at whole minutes only: a T0 on the
        # minute stays re-derivable for the whole 7 days.
        read_time = read_time.replace(second=0, microsecond=0)
    return ReadPlan(
        ReadMode.POINT_IN_TIME, read_time, f"{expectation}, within the {_duration(window)} read-time window"
    )


def expected_rate() -> tuple[float, str]:
    """Wallets per second: the last completed full run's (of at least
    OBSERVED_MIN_WALLETS), or the configured rate."""
    last = (
        ReconciliationRun.objects.filter(
            status=RunStatus.COMPLETED,
            scope_uids=[],
            wallets_checked__gte=max(1, OBSERVED_MIN_WALLETS),
            started_at__isnull=False,
        )
        .exclude(finished_at=None)
        .order_by("-finished_at")
        .first()
    )
    if last is not None:
        assert last.duration is not None  # the query asked for a start and a finish
        if last.duration.total_seconds() > 0:
            return last.wallets_checked / last.duration.total_seconds(), f"observed on run {last.pk}"
    return settings.RECONCILE_EXPECTED_RATE, "RECONCILE_EXPECTED_RATE"


def _rate(rate: float) -> str:
    return f"{rate:,.0f}" if rate >= 10 else f"{rate:.3g}"


def _duration(value: timedelta) -> str:
    minutes = value.total_seconds() / 60
    if minutes <= 1:
        return "a minute or less"
    if minutes < 120:
        return f"{math.ceil(minutes)} minutes"
    hours = minutes / 60
    return f"{hours:.0f} hours" if hours < 48 else f"{hours / 24:.0f} days"


def first_read(exists: bool, points: Any, ledger: LedgerTotals) -> dict[str, Any] | None:
    """What one wallet looks like at a run's first read: None when its points agree
    with its ledger's sum, else {"wallet_points", "ledger_sum", "delta"} (JSON
    values: a wallet that does not exist holds 0 points; points that are not an
    integer, and a sum that is not one, have no delta). The run and its
    re-derivation (reconciliation/rederive.py) both judge wallets with this."""
    if not exists:
        points = 0
    if balances_agree(points, ledger.total):
        return None
    wallet_points = points if is_points(points) else None
    total: int | float | str = ledger.total
    if isinstance(total, float) and not math.isfinite(total):
        total = repr(total)  # JSON has no NaN or infinity
    delta = wallet_points - total if wallet_points is not None and is_points(total) else None
    return {"wallet_points": wallet_points, "ledger_sum": total, "delta": delta}
