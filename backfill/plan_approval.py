"""Four eyes on backfill plans, the maker-checker of heals applied to replays:
whoever planned a dry run (its `started_by`) cannot approve it; a second person
with the right role (`backfill.approve_plan`: ops and finance approvers)
approves it with a reason, which is kept on the plan (who, when, why); and a
real run bound to a plan that moves more than BACKFILL_PLAN_APPROVAL_ABOVE
points is refused until then, whichever way it is asked for (the admin's
"Run for real, bound to this plan", `replay_webhooks --plan`): runs.
bound_run_refusal and planner.check_plan ask `run_refusal` here.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from backfill.models import DataMigration, MigrationStatus
from revassure.formatting import points, when
from revassure.refusals import Refused

log = logging.getLogger(__name__)

APPROVE = "backfill.approve_plan"


class PlanRefused(Refused, ValueError):
    """A plan cannot be approved now; the message says why, for a person."""


def moved_points(plan: DataMigration) -> int:
    """How many points the plan moves, wallet by wallet, in absolute value."""
    wallets = (plan.plan or {}).get("wallets", {})
    return sum(abs(w["points_after"] - w["points_before"]) for w in wallets.values())


def needs_approval(plan: DataMigration) -> bool:
    return moved_points(plan) > settings.BACKFILL_PLAN_APPROVAL_ABOVE


def approval_refusal(plan: DataMigration, actor) -> str:
    """Why `actor` cannot approve this plan now ("" when they can). Read-only: the
    migration's page asks it before offering the form."""
    if actor is None or not actor.is_active or not actor.has_perm(APPROVE):
        return "only ops and finance approvers approve plans"
    if not plan.dry_run or plan.status != MigrationStatus.COMPLETED:
        return "only a completed dry run's plan is approved"
    if plan.plan_approved_by_id is not None:
        return f"{plan.plan_approved_by} approved it already, at {when(plan.plan_approved_at)}"
    if plan.started_by_id is not None and plan.started_by_id == actor.pk:
        return "you planned it: a second person approves it"
    return ""


def approve_plan(plan_id: int, *, actor, reason: str) -> DataMigration:
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
