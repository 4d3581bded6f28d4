"""Re-deriving a sealed run: its findings read again from Firestore at its instant.

A point-in-time run (reconciliation/instant.py) judged every wallet as it was
at its read time T0. Within Firestore's read-time window, the same reads at
the same T0 give the same wallets and the same first reads, whoever makes
them and whenever: `verify_reports --rederive RUN_ID` makes them again and
compares them with the sealed report, wallet by wallet:

- the wallets checked (how many);
- the wallets that disagreed at T0, each with its points, ledger sum and
  delta at T0: the sealed violations' `at_read_time` and the candidates the
  live re-check cleared (`cleared_at_recheck`), together.

The live re-check itself happened once, later than T0: it is not re-derived.
A run that read live, one sealed before runs had an instant, and one whose T0
is past the window cannot be re-derived; the answer says which.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone

from reconciliation import instant, wallet_checks
from reconciliation.models import ReadMode, ReconciliationRun, RunStatus
from revassure.firestore import FirestoreGateway

DIFFERENCES_LISTED = 50  # beyond these, the differences are counted


class Outcome(enum.IntEnum):
    """The command's exit status."""

    SAME = 0
    CANNOT = 1  # not re-derivable: read live, outside the window, not sealed
    DIFFERENT = 2


@dataclass
class Rederivation:
    run_id: int
    outcome: Outcome
    message: str
    read_time: datetime | None = None
    wallets_checked: dict[str, int] = field(default_factory=dict)  # {"report": n, "rederived": n}
    disagreeing: int = 0  # wallets that disagreed at T0, re-derived
    differences: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "outcome": self.outcome.name.lower(),
            "same": self.outcome == Outcome.SAME,
            "message": self.message,
            "read_time": self.read_time.isoformat() if self.read_time else None,
            "wallets_checked": self.wallets_checked,
            "disagreeing_at_read_time": self.disagreeing,
            "differences": self.differences,
        }


def rederive(run_id: int, *, gateway: FirestoreGateway) -> Rederivation:
    """Re-derive run `run_id`'s findings at its T0 and compare them with its sealed report."""
    run = ReconciliationRun.objects.filter(pk=run_id).first()
    refusal = _refusal(run, gateway)
    if refusal:
        return Rederivation(run_id, Outcome.CANNOT, refusal, read_time=run.read_time if run else None)
    # _refusal refuses a missing run and one not read at one instant (T0, its read_time).
    assert run is not None and run.read_time is not None
    checked, found = first_reads(run.scope_uids, gateway, read_time=run.read_time)
    sealed = sealed_first_reads(run)
    differences = compare(
        sealed_checked=run.wallets_checked, sealed=sealed, rederived_checked=checked, rederived=found
    )
    if len(differences) > DIFFERENCES_LISTED:
        more = len(differences) - DIFFERENCES_LISTED
        differences = differences[:DIFFERENCES_LISTED] + [f"and {more} more differences"]
    same = not differences
    return Rederivation(
        run.pk,
        Outcome.SAME if same else Outcome.DIFFERENT,
        (
            f"run {run.pk} re-derived at {run.read_time.isoformat()}: the same {checked} wallets checked "
            f"and the same {len(found)} wallets disagreeing, with the same deltas"
            if same
            else f"run {run.pk} re-derived at {run.read_time.isoformat()} differs from its sealed report"
        ),
        read_time=run.read_time,
        wallets_checked={"report": run.wallets_checked, "rederived": checked},
        disagreeing=len(found),
        differences=differences,
    )


def _refusal(run: ReconciliationRun | None, gateway: FirestoreGateway) -> str:
    """Why the run cannot be re-derived ("" when it can)."""
    if run is None:
        return "no such run"
    if run.status != RunStatus.COMPLETED:
        return f"run {run.pk} is {run.status}: only a sealed (completed) run can be re-derived"
    if run.read_mode != ReadMode.POINT_IN_TIME:
        why = f" ({run.read_mode_reason})" if run.read_mode_reason else " (it was sealed before runs had one)"
        return f"run {run.pk} read live, not at one instant{why}: it cannot be re-derived"
    window = instant.read_window()
    assert run.read_time is not None  # a run read at one instant has its T0
    age = timezone.now() - run.read_time
    if age > window:
        return (
            f"run {run.pk} read at {run.read_time.isoformat()}, {_ago(age)} ago: outside Firestore's "
            f"{_ago(window)} read-time window"
            + ("" if settings.FIRESTORE_PITR_ENABLED else " (7 days with FIRESTORE_PITR_ENABLED)")
            + ", it can no longer be re-derived"
        )
    support = gateway.read_time_support()
    if not support.supported:
        return f"{support.reason}: run {run.pk} cannot be re-derived here"
    return ""


def first_reads(
    scope_uids: list[str], gateway: FirestoreGateway, *, read_time: datetime
) -> tuple[int, dict[str, dict[str, Any]]]:
    """(wallets checked, {uid: first read} of each wallet that disagreed) at `read_time`,
    with the reads and the judgement of a run (wallet_checks.wallet_chunks, instant.first_read)."""
    checked, found = 0, {}
    for wallets in wallet_checks.wallet_chunks(scope_uids, gateway, read_time=read_time):
        uids = [uid for uid, _ in wallets]
        totals = gateway.start_aggregation(
            uids, concurrency=settings.RECONCILE_CONCURRENCY, read_time=read_time
        ).result()
        for uid, encoded in wallets:
            exists, points = wallet_checks.decode_points(encoded)
            ledger = totals[uid]
            if not exists and ledger.count == 0:
                continue
            checked += 1
            first = instant.first_read(exists, points, ledger)
            if first is not None:
                found[uid] = first
    return checked, found


def sealed_first_reads(run: ReconciliationRun) -> dict[str, dict[str, Any] | None]:
    """{uid: first read} of every wallet the sealed report says disagreed at T0:
    its violations (which held at the re-check) and the candidates cleared there."""
    sealed = {v.uid: v.at_read_time for v in run.violations.all()}
    for cleared in run.cleared_at_recheck:
        sealed[cleared["uid"]] = {key: value for key, value in cleared.items() if key != "uid"}
    return sealed


def compare(
    *,
    sealed_checked: int,
    sealed: dict[str, dict[str, Any] | None],
    rederived_checked: int,
    rederived: dict[str, dict[str, Any]],
) -> list[str]:
    """Each difference between the sealed findings and the re-derived ones, in uid order."""
    differences = []
    if sealed_checked != rederived_checked:
        differences.append(
            f"wallets checked: the report has {sealed_checked}, re-derived {rederived_checked}"
        )
    for uid in sorted(set(sealed) | set(rederived)):
        was, now = sealed.get(uid), rederived.get(uid)
        if uid not in rederived:
            differences.append(
                f"wallet {uid}: the report has it disagreeing at T0 ({_show(was)}), re-derived it does not"
            )
        elif uid not in sealed:
            differences.append(f"wallet {uid}: disagrees at T0 ({_show(now)}), the report does not list it")
        elif _canonical(was) != _canonical(now):
            differences.append(f"wallet {uid}: the report has {_show(was)} at T0, re-derived {_show(now)}")
    return differences


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _show(first: dict[str, Any] | None) -> str:
    if first is None:
        return "nothing recorded"
    return f"points {first['wallet_points']}, ledger sum {first['ledger_sum']}, delta {first['delta']}"


def _ago(value) -> str:
    hours = value.total_seconds() / 3600
    return (
        f"{hours * 60:.0f} minutes"
        if hours < 2
        else f"{hours:.0f} hours"
        if hours < 48
        else f"{hours / 24:.0f} days"
    )
