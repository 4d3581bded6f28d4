"""Dry runs: what a replay would do, decided line by line in file order by the
same rules as the real run, over Firestore as read now plus the run's own
planned writes. Nothing is written to Firestore.

A plan keeps per wallet the points before and after and the entries it would
create, the outcome counts, and a checksum of all that; a real run can be
bound to a plan (`check_plan`), once a second person approved it when it moves
enough points (backfill/plan_approval.py), and is refused when planning the
same file again now gives another checksum.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace

from backfill import events, plan_approval
from backfill.models import DataMigration, EventStatus, MigrationStatus, PlanItem
from backfill.rules import WalletView, decide
from revassure.firestore import FirestoreGateway
from revassure.ledger import is_points


class PlanMismatch(Exception):
    pass


class PlanNotApproved(PlanMismatch):
    """The plan needs a second person's approval before a real run is bound to it."""


def require_approved(plan_id: int) -> None:
    """PlanNotApproved unless plan `plan_id` may have a real run bound to it now
    (four eyes: backfill/plan_approval.py); asked before planning the file again."""
    plan = DataMigration.objects.filter(pk=plan_id, dry_run=True, status=MigrationStatus.COMPLETED).first()
    if plan is None:
        raise PlanMismatch(f"migration {plan_id} is not a completed dry run")
    refusal = plan_approval.run_refusal(plan)
    if refusal:
        raise PlanNotApproved(f"migration {plan_id} cannot be run for real yet: {refusal}")


@dataclass(frozen=True)
class Judged:
    """What the plan decided for one line, and why (a dry run keeps these as PlanItems)."""

    outcome: str
    reason: str = ""
    event: events.ProviderEvent | None = None
    unparsed_id: str = ""  # the event id of a line that does not parse, when it has one


class Plan:
    """A dry run's view of the world: Firestore as read, plus what it would write."""

    def __init__(self, gateway: FirestoreGateway, *, allow_negative: bool):
        self.gateway = gateway
        self.allow_negative = allow_negative
        self.entries: dict[str, dict[str, dict]] = defaultdict(dict)  # uid -> entry id -> entry
        self.points_before: dict[str, int] = {}
        self.delta: dict[str, int] = defaultdict(int)
        self.identities: dict[str, str] = {}  # business identities it would credit: entry id -> uid

    def consider(self, raw: bytes | str) -> str:
        """The outcome the line would have, remembering what it would write."""
        return self.judge(raw).outcome

    def judge(self, raw: bytes | str) -> Judged:
        """consider(), with the reason and the event: what a plan shows per line."""
        try:
            event = events.parse(raw)
        except events.Unusable as exc:
            return Judged(EventStatus.QUARANTINED, str(exc), unparsed_id=events.best_effort_id(raw))
        view = self._view(event)
        decision = decide(event, view, allow_negative=self.allow_negative)
        if decision.status == EventStatus.APPLIED:
            assert decision.entry is not None  # an applied decision carries its entry
            self.points_before.setdefault(event.user_id, view.points - self.delta[event.user_id])
            self.entries[event.user_id][event.entry_id] = decision.entry
            self.delta[event.user_id] += event.amount
            self.identities[event.entry_id] = event.user_id
        return Judged(decision.status, decision.reason, event)

    def _view(self, event) -> WalletView:
        view = self.gateway.event_view(event)
        if view.identity_owner is None and event.entry_id in self.identities:
            view = replace(view, identity_owner=self.identities[event.entry_id])
        planned = self.entries.get(event.user_id, {})
        if not view.wallet_exists or not is_points(view.points):
            return view
        original = view.original_amount
        if original is None and event.original_entry_id in planned:
            original = planned[event.original_entry_id]["amount"]
        reversed_planned = sum(
            e["amount"] for e in planned.values() if e.get("reverses") == event.original_entry_id
        )
        return replace(
            view,
            entry_exists=view.entry_exists or event.entry_id in planned,
            points=view.points + self.delta.get(event.user_id, 0),
            original_amount=original,
            reversed_before=view.reversed_before + reversed_planned,
        )

    def summary(self, outcomes: dict[str, int]) -> dict:
        wallets = {
            uid: {
                "points_before": self.points_before[uid],
                "points_after": self.points_before[uid] + self.delta[uid],
                "entries": {entry_id: entry["amount"] for entry_id, entry in sorted(entries.items())},
            }
            for uid, entries in sorted(self.entries.items())
        }
        return {"outcomes": outcomes, "wallets": wallets, "points_moved": sum(self.delta.values())}

    @staticmethod
    def checksum(plan: dict) -> str:
        return hashlib.sha256(json.dumps(plan, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def plan_lines(
    lines: Iterable[tuple[int, bytes]], plan: Plan, *, judged: dict[int, Judged] | None = None
) -> tuple[dict[str, int], list[tuple[int, bytes]], int]:
    """Consider every numbered line in order: (outcome counts, the deferred
    (number, line)s to consider again at the end, the last line number).
    `judged`, when given, receives each line's Judged by its number."""
    counts: dict[str, int] = defaultdict(int)
    deferred, last = [], 0
    for number, raw in lines:
        verdict = plan.judge(raw)
        counts[verdict.outcome] += 1
        last = number
        if judged is not None:
            judged[number] = verdict
        if verdict.outcome == EventStatus.DEFERRED:
            deferred.append((number, raw))
    return counts, deferred, last


def save_items(migration: DataMigration, judged: dict[int, Judged]) -> None:
    """Keep a dry run's per-line plan (replacing what an interrupted attempt kept)."""
    PlanItem.objects.filter(migration=migration).delete()
    PlanItem.objects.bulk_create(
        (
            PlanItem(
                migration=migration,
                line=number,
                outcome=verdict.outcome,
                reason=verdict.reason,
                **_identity(verdict),
            )
            for number, verdict in sorted(judged.items())
        ),
        batch_size=1000,
    )


def _identity(verdict: Judged) -> dict:
    event = verdict.event
    if event is None:
        return {"event_id": verdict.unparsed_id}
    return {
        "event_id": event.event_id,
        "event_type": event.type,
        "user_id": event.user_id,
        "entry_id": event.entry_id,
        "amount": event.amount,
    }


def check_plan(plan_id: int, fresh: DataMigration) -> None:
    """Refuse unless `fresh`, a dry run of the same file made just now, is exactly
    the approved plan `plan_id`. A changed world (an entry that landed since, a
    wallet that moved) gives a different plan, hence a different checksum."""
    approved = DataMigration.objects.filter(
        pk=plan_id, dry_run=True, status=MigrationStatus.COMPLETED
    ).first()
    if approved is None:
        raise PlanMismatch(f"migration {plan_id} is not a completed dry run")
    require_approved(plan_id)
    if approved.kind != fresh.kind:
        raise PlanMismatch(f"migration {plan_id} planned a {approved.get_kind_display()}, not this")
    if fresh.plan_checksum != approved.plan_checksum:
        raise PlanMismatch(
            f"the run would differ from plan {plan_id} (checksum {approved.plan_checksum[:12]}…, "
            f"now {fresh.plan_checksum[:12]}…; see dry run {fresh.pk})"
        )
