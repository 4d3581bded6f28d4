"""Four eyes on backfill plans, the maker-checker of heals applied to replays:
whoever planned a dry run (its `started_by`) cannot approve it; a second person
with the right role (`backfill.approve_plan`: ops and finance approvers)
approves it with a reason, which is kept on the plan (who, when, why); and a
real run bound to a plan that moves more than BACKFILL_PLAN_APPROVAL_ABOVE
points is refused until then, whichever way it is asked for (the admin's
"Run for real, bound to this plan", `replay_webhooks --plan`): runs.
bound_run_refusal and planner.check_plan ask `run_refusal` here.

A real run not bound to a plan (the upload form with "dry run" unticked, the
commands without `--dry-run`, a stored replay from the admin, the completeness
page or the job API) has no plan to say what it moves, so it is measured by
what its events name (`named_points`: every event's points, whatever its
sign), which no run can exceed. Above BACKFILL_PLAN_APPROVAL_ABOVE it is
refused before anything is queued (`require_plan`), the refusal saying how to
get an approved plan: one person may run alone only what is too small to need
a second.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.db import transaction
from django.utils import timezone

from backfill import events
from backfill.models import DataMigration, MigrationStatus
from revassure.formatting import points, when
from revassure.refusals import Refused, may

log = logging.getLogger(__name__)

APPROVE = "backfill.approve_plan"


class PlanRefused(Refused, ValueError):
    """A plan cannot be approved now; the message says why, for a person."""


class PlanRequired(Refused, ValueError):
    """A real run not bound to a plan may name more points than one person may
    move alone; the message says how to get an approved plan."""


def moved_points(plan: DataMigration) -> int:
    """How many points the plan moves, wallet by wallet, in absolute value."""
    wallets = (plan.plan or {}).get("wallets", {})
    return sum(abs(w["points_after"] - w["points_before"]) for w in wallets.values())


def needs_approval(plan: DataMigration) -> bool:
    return moved_points(plan) > settings.BACKFILL_PLAN_APPROVAL_ABOVE


def approval_refusal(plan: DataMigration, actor: User | AnonymousUser) -> str:
    """Why `actor` cannot approve this plan now ("" when they can). Read-only: the
    migration's page asks it before offering the form."""
    if not may(actor, APPROVE):
        return "only ops and finance approvers approve plans"
    if not plan.dry_run or plan.status != MigrationStatus.COMPLETED:
        return "only a completed dry run's plan is approved"
    if plan.plan_approved_by_id is not None:
        return f"{plan.plan_approved_by} approved it already, at {when(plan.plan_approved_at)}"
    if plan.started_by_id is not None and plan.started_by_id == actor.pk:
        return "you planned it: a second person approves it"
    return ""


# A plan nobody approved within this long is the world as it was then: plan again.
PLAN_WAITS = timedelta(days=7)


def awaiting(user: User) -> list[DataMigration]:
    """The plans waiting for `user` to approve them: completed dry runs made in
    the last PLAN_WAITS that need a second person, someone else planned, and
    `user` may approve (approval_refusal: none). Not the dry runs made to check a
    bound run, nor plans a run was bound to already."""
    if not may(user, APPROVE):
        return []
    plans = (
        DataMigration.objects.filter(
            dry_run=True,
            status=MigrationStatus.COMPLETED,
            plan_approved_by=None,
            finished_at__gte=timezone.now() - PLAN_WAITS,
        )
        .exclude(parameters__has_key="checks")
        .exclude(started_by=user)
        .select_related("started_by")
        .order_by("finished_at", "pk")
    )
    bound = set(
        DataMigration.objects.filter(dry_run=False, parameters__has_key="plan").values_list(
            "parameters__plan", flat=True
        )
    )
    return [plan for plan in plans if plan.pk not in bound and needs_approval(plan)]


def approve_plan(plan_id: int, *, actor: User, reason: str) -> DataMigration:
    """Record `actor`'s approval of a dry run's plan, with a reason. PlanRefused says why not."""
    if not reason or not reason.strip():
        raise PlanRefused("a reason is required to approve a plan")
    with transaction.atomic():
        # Only the plan's row is locked: PostgreSQL refuses FOR UPDATE across the
        # nullable join select_related("plan_approved_by") would add.
        plan = DataMigration.objects.select_for_update().get(pk=plan_id)
        refusal = approval_refusal(plan, actor)
        if refusal:
            raise PlanRefused(refusal)
        plan.plan_approved_by, plan.plan_approved_at = actor, timezone.now()
        plan.plan_approval_reason = reason.strip()
        plan.save(update_fields=["plan_approved_by", "plan_approved_at", "plan_approval_reason"])
    log.info("backfill plan approved", extra={"migration_id": plan.pk, "actor": str(actor)})
    return plan


def run_refusal(plan: DataMigration) -> str:
    """Why no real run may be bound to this plan yet for want of a second person ("" when it may)."""
    if plan.plan_approved_by_id is not None or not needs_approval(plan):
        return ""
    return (
        f"its plan moves {points(moved_points(plan))} points, above BACKFILL_PLAN_APPROVAL_ABOVE "
        f"({points(settings.BACKFILL_PLAN_APPROVAL_ABOVE)}): a second person, not who planned it, "
        f"approves plan {plan.pk} first, on its page"
    )


def approval_text(plan: DataMigration) -> str:
    """The plan's approval as its pages say it."""
    if plan.plan_approved_by_id is not None:
        approved = f"Approved by {plan.plan_approved_by} at {when(plan.plan_approved_at)}"
        return f"{approved}: {plan.plan_approval_reason}"
    if needs_approval(plan):
        moved = points(moved_points(plan))
        return f"Not approved yet: it moves {moved} points, so a second person approves it."
    return (
        f"No second person needed: it moves {points(moved_points(plan))} points, at most "
        f"BACKFILL_PLAN_APPROVAL_ABOVE ({points(settings.BACKFILL_PLAN_APPROVAL_ABOVE)})."
    )


def named_points(raws: Iterable[bytes | str]) -> int:
    """The points the events name, each in absolute value (a line that is not a
    usable event names none): more than any run of them can move."""
    total = 0
    for raw in raws:
        try:
            total += abs(events.parse(raw).amount)
        except events.Unusable:
            continue
    return total


def unplanned_refusal(named: int) -> str:
    """Why a real run not bound to a plan, its events naming `named` points, may
    not start ("" when one person suffices)."""
    if named <= settings.BACKFILL_PLAN_APPROVAL_ABOVE:
        return ""
    return (
        f"its events name {points(named)} points, above BACKFILL_PLAN_APPROVAL_ABOVE "
        f"({points(settings.BACKFILL_PLAN_APPROVAL_ABOVE)}), so a real run goes through a plan a second "
        "person approves: start a dry run, have a second person approve its plan on the dry run's page, "
        "then run it for real bound to that plan"
    )


def require_plan(named: int, *, how: str) -> None:
    """PlanRequired, saying `how` this entry point binds a run to a plan, when
    a real run naming `named` points needs an approved plan."""
    refusal = unplanned_refusal(named)
    if refusal:
        log.info("unplanned real run refused", extra={"named_points": named})
        raise PlanRequired(f"{refusal} ({how})")
