"""Closing a settlement run's breaks, each through the rail that already exists:

- missing_in_ledger rows with a stored delivery: a replay of those deliveries
  as a tracked data migration, queued as a dry run first; ops read its plan on
  the migration's page and run it for real, bound to that plan, from there
  (backfill.run_requests.request_file_replay, the backfill's permission and flag);
- unreversed rows: a reversal backfill of finance's CSV built from the rows,
  also a dry run first (its over-reversal quarantine decides as for any CSV);
- points_mismatch and not_settled rows: manual adjustments proposed with the
  reason code `settlement` (reconciliation.changes: maker-checker, the freeze),
  each settling its row's payment: one standing adjustment per payment, and
  matching counts an applied one as credited, so a break is paid out once;
- any break: marked explained with a reason, by an approver.

Each leaves a FollowUp on its rows, so a row's page says what was done about
it; the sealed report itself never changes.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable

from django.contrib.auth.models import AnonymousUser, User
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet

from backfill import events, run_requests, runs
from backfill.models import DataMigration, MigrationKind, MigrationStatus
from reconciliation import change_queries, changes
from reconciliation.models import BalanceRequest, ReasonCode
from revassure.firestore import FirestoreGateway
from revassure.refusals import Refused, may
from settlement.models import (
    BREAKS,
    FollowUp,
    FollowUpKind,
    Outcome,
    RunStatus,
    SettlementRow,
    SettlementRun,
)

EXPLAIN_PERMISSION = "settlement.explain_settlementrow"
ENDED_BADLY = (MigrationStatus.FAILED, MigrationStatus.CANCELLED)
PROPOSE_PERMISSION = "reconciliation.propose_balancerequest"


class ActionRefused(Refused):
    """The action cannot be done for these rows; the message says why, for a person."""


def _rows(rows, outcomes: tuple[str, ...], what: str) -> list[SettlementRow]:
    rows = list(rows)
    if not rows:
        raise ActionRefused("select at least one row")
    if any(row.run.status != RunStatus.COMPLETED for row in rows):
        raise ActionRefused("only rows of completed settlement runs can be acted on")
    wrong = [row for row in rows if row.outcome not in outcomes]
    if wrong:
        shown = ", ".join(Outcome(o).label for o in outcomes)
        raise ActionRefused(
            f"{what} is for {shown} rows only; {_where(wrong[0])} is {wrong[0].get_outcome_display()}"
        )
    return rows


def _where(row: SettlementRow) -> str:
    return f"run {row.run_id} line {row.line}" if row.line else f"run {row.run_id} row {row.pk}"


def replay_missing(rows: Iterable[SettlementRow], *, actor: User) -> DataMigration:
    """Replay the stored deliveries of missing_in_ledger rows: a dry run first."""
    rows = _rows(rows, (Outcome.MISSING_IN_LEDGER,), "replaying")
    unplayable = [row for row in rows if not row.replayable]
    if unplayable:
        raise ActionRefused(
            f"{_where(unplayable[0])} has no stored delivery replay can apply ({unplayable[0].detail})"
        )
    # One compact line per delivery (a webhook body may span lines), in row order;
    # read by the intake's own rule (a leading byte-order mark is allowed there).
    lines = []
    for row in rows:
        assert row.delivery is not None  # a replayable row names its stored delivery
        try:
            lines.append(json.dumps(json.loads(events.text_of(row.delivery.raw))))
        except (events.Unusable, ValueError) as exc:
            raise ActionRefused(f"{_where(row)}: its stored delivery cannot be replayed ({exc})") from exc
    upload = ContentFile(
        ("\n".join(lines) + "\n").encode(), name=f"settlement-run-{rows[0].run_id}-missing-in-ledger.jsonl"
    )
    with transaction.atomic():
        migration = run_requests.request_file_replay(upload, dry_run=True, actor=actor)
        _follow(rows, FollowUpKind.REPLAY, actor, migration=migration)
    return migration


REVERSAL_COLUMNS = ("payment_id", "refund_id", "chargeback_id", "user_id", "points", "created")


def propose_reversals(rows: Iterable[SettlementRow], *, actor: User) -> DataMigration:
    """A reversal backfill (finance's CSV, built from the rows) as a dry run first."""
    rows = _rows(rows, (Outcome.UNREVERSED,), "a reversal backfill")
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(REVERSAL_COLUMNS)
    for row in rows:
        refund, chargeback = (row.reference, "") if row.type == "refund" else ("", row.reference)
        assert row.settled_at is not None  # an unreversed row is a well-formed statement line
        writer.writerow(
            [row.payment_id, refund, chargeback, row.user_id, row.points, row.settled_at.isoformat()]
        )
    upload = ContentFile(text.getvalue().encode(), name=f"settlement-run-{rows[0].run_id}-unreversed.csv")
    with transaction.atomic():
        migration = run_requests.request_file_replay(
            upload, dry_run=True, actor=actor, kind=MigrationKind.REVERSAL_CSV
        )
        _follow(rows, FollowUpKind.REVERSAL, actor, migration=migration)
    return migration


def adjustment_of(row: SettlementRow) -> tuple[str, int]:
    """(wallet, signed points) the manual adjustment for a row would move, or
    ActionRefused when the row does not say enough to know."""
    if row.ledger_amount is None:
        raise ActionRefused(
            f"{_where(row)}: the ledger amount is not known as a whole number ({row.detail}); "
            "fix the data first"
        )
    if row.outcome == Outcome.NOT_SETTLED:
        return row.ledger_uid, -row.ledger_amount  # take back what was given for money not received
    assert row.points is not None  # a statement's row (a mismatch): its points were read
    expected = row.points if row.type == "payment" else -row.points
    return row.ledger_uid, expected - row.ledger_amount


def adjustment_refusals(rows: Iterable[SettlementRow]) -> dict[int, str]:
    """{row pk: why no manual adjustment may be proposed for it}, for the rows
    whose payment (refund, chargeback) has one proposed, approved or applied
    already, from whichever row, run or import of a statement: one query."""
    rows = list(rows)
    standing = change_queries.settling_adjustments(row.entry_id for row in rows)
    return {
        row.pk: f"{_where(row)}: {change_queries.settled_refusal(standing[row.entry_id])}"
        for row in rows
        if row.entry_id in standing
    }


def propose_adjustments(
    rows: Iterable[SettlementRow], *, actor: User, reason: str, gateway: FirestoreGateway
) -> list[BalanceRequest]:
    """One manual adjustment per row (all or none), reason code `settlement`;
    a second person approves each, as for any adjustment. Each settles its
    row's payment: refused for a payment that has an adjustment standing
    (changes.propose_adjustment holds that under a database constraint too)."""
    rows = _rows(rows, (Outcome.POINTS_MISMATCH, Outcome.NOT_SETTLED), "a manual adjustment")
    first: dict[str, SettlementRow] = {}
    for row in rows:
        other = first.setdefault(row.entry_id, row)
        if other is not row:
            raise ActionRefused(
                f"{_where(other)} and {_where(row)} are the same {row.type} ({row.entry_id}): "
                "select one row per payment"
            )
    refusals = adjustment_refusals(rows)
    if refusals:
        raise ActionRefused(next(iter(refusals.values())))
    planned = [(row, *adjustment_of(row)) for row in rows]
    proposed = []
    with transaction.atomic():
        for row, uid, amount in planned:
            why = f"settlement {_where(row)}: {row.get_outcome_display()}"
            request = changes.propose_adjustment(
                actor=actor,
                uid=uid,
                amount=amount,
                reason_code=ReasonCode.SETTLEMENT,
                reason=f"{reason.strip()} ({why}; {row.detail})",
                gateway=gateway,
                settles=row.entry_id,
            )
            _follow([row], FollowUpKind.ADJUSTMENT, actor, request=request)
            proposed.append(request)
    return proposed


def explain(rows: Iterable[SettlementRow], *, actor: User, reason: str) -> int:
    """Mark breaks explained (an approver, a reason): they stay in the report,
    shown as explained. Rows explained before are left as they were."""
    if not may(actor, EXPLAIN_PERMISSION):
        raise ActionRefused("only a finance approver may mark settlement rows explained")
    if not reason.strip():
        raise ActionRefused("say why: a reason is required")
    rows = _rows(rows, BREAKS, "marking explained")
    with transaction.atomic():
        done = set(
            FollowUp.objects.filter(row__in=rows, kind=FollowUpKind.EXPLAINED).values_list(
                "row_id", flat=True
            )
        )
        fresh = [row for row in rows if row.pk not in done]
        _follow(fresh, FollowUpKind.EXPLAINED, actor, reason=reason.strip())
    return len(fresh)


# Which break outcomes each permission acts on (the actions above): approvers
# explain any break; the backfill's operators replay and reverse; finance
# reviewers propose adjustments.
ACTS_ON = {
    EXPLAIN_PERMISSION: BREAKS,
    runs.PERMISSION: (Outcome.MISSING_IN_LEDGER, Outcome.UNREVERSED),
    PROPOSE_PERMISSION: (Outcome.POINTS_MISMATCH, Outcome.NOT_SETTLED),
}


# One row at a time, from its page: the actions above, each with the outcomes it
# is for and who does it (said to a person whose role does not).
REPLAY, REVERSE, ADJUST, EXPLAIN = "replay", "reverse", "adjust", "explain"
ROW_ACTIONS: dict[str, tuple[str, tuple[str, ...], str]] = {
    REPLAY: (runs.PERMISSION, (Outcome.MISSING_IN_LEDGER,), "ops replay a stored delivery (a dry run first)"),
    REVERSE: (runs.PERMISSION, (Outcome.UNREVERSED,), "ops backfill a reversal (a dry run first)"),
    ADJUST: (
        PROPOSE_PERMISSION,
        (Outcome.POINTS_MISMATCH, Outcome.NOT_SETTLED),
        "a finance reviewer proposes a manual adjustment",
    ),
    EXPLAIN: (EXPLAIN_PERMISSION, BREAKS, "a finance approver marks a row explained"),
}


def row_actions(row: SettlementRow) -> list[str]:
    """The actions that close this row's kind of break, whoever may take them."""
    return [action for action, (_, outcomes, _) in ROW_ACTIONS.items() if row.outcome in outcomes]


def row_refusal(row: SettlementRow, actor: User | AnonymousUser, action: str) -> str:
    """Why `actor` cannot take `action` on this row now, for a person; "" when
    they can. Read-only: the row's page asks it so that it offers only what the
    actions above accept, and says why not (they still refuse on their own)."""
    permission, outcomes, who = ROW_ACTIONS[action]
    if not may(actor, permission):
        return f"not your role: {who}"
    if row.outcome not in outcomes:
        return f"it is for {', '.join(Outcome(o).label for o in outcomes)} rows"
    if row.run.status != RunStatus.COMPLETED:
        return "only rows of completed settlement runs are acted on"
    if action == REPLAY and not row.replayable:
        return f"no stored delivery replay can apply ({row.detail})"
    if action in (REPLAY, REVERSE):
        return _in_hand(row, FollowUpKind.REPLAY if action == REPLAY else FollowUpKind.REVERSAL)
    if action == ADJUST:
        refusals = adjustment_refusals([row])
        if row.pk in refusals:
            return refusals[row.pk]
        try:
            adjustment_of(row)
        except ActionRefused as exc:
            return str(exc)
    if action == EXPLAIN:
        explained = row.follow_ups.filter(kind=FollowUpKind.EXPLAINED).select_related("actor").first()
        if explained is not None:
            return f"{explained.actor} explained it already: {explained.reason.rstrip('.')}"
    return ""


def _in_hand(row: SettlementRow, kind: str) -> str:
    """What a dry run planned for this row already says, while it stands (its plan
    waits to be run, or its real run goes on or is done); "" when there is none, or
    it or its real run failed or was cancelled (plan again: the world changed)."""
    follow_up = row.follow_ups.filter(kind=kind).select_related("migration").order_by("-pk").first()
    plan = follow_up.migration if follow_up is not None else None
    if plan is None or plan.status in ENDED_BADLY:
        return ""
    run = run_requests.bound_runs(plan).order_by("-pk").first()
    if run is None:
        return f"dry run {plan.pk} plans it already: read its plan, and run it for real from its page"
    if run.status in ENDED_BADLY:
        return ""
    return f"run {run.pk}, bound to dry run {plan.pk}, does it ({run.get_status_display().lower()})"


def outcomes_for(user: User | AnonymousUser) -> set[str]:
    """The break outcomes this user has an action for."""
    if not user.is_active:
        return set()
    return {
        outcome for permission, outcomes in ACTS_ON.items() if may(user, permission) for outcome in outcomes
    }


def awaiting(user: User | AnonymousUser) -> QuerySet[SettlementRow]:
    """Break rows nothing was done about yet (no follow-up) that this user has an
    action for: rows of completed runs, except a run whose very file was matched
    again later (the later run's rows stand for it)."""
    outcomes = outcomes_for(user)
    if not outcomes:
        return SettlementRow.objects.none()
    again = SettlementRun.objects.filter(
        status=RunStatus.COMPLETED, file_sha256=OuterRef("run__file_sha256"), pk__gt=OuterRef("run_id")
    ).exclude(file_sha256="")
    rows = SettlementRow.objects.filter(run__status=RunStatus.COMPLETED, outcome__in=outcomes)
    if not may(user, EXPLAIN_PERMISSION):
        # Without a delivery to replay, a missing row has nothing for an operator to do.
        rows = rows.exclude(outcome=Outcome.MISSING_IN_LEDGER, replayable=False)
    return rows.exclude(Exists(again)).exclude(Exists(FollowUp.objects.filter(row=OuterRef("pk"))))


def _follow(rows, kind: str, actor, **fields) -> None:
    FollowUp.objects.bulk_create(FollowUp(row=row, kind=kind, actor=actor, **fields) for row in rows)
