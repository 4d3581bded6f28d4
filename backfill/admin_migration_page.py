"""A data migration's own page: each line's outcome with its reason (paged,
filtered by outcome), and for a dry run its plan: the real runs bound to it,
running it for real bound to it, and a second person's approval of it.
DataMigrationAdmin (admin.py) mixes this in."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse
from django.utils.text import capfirst

from backfill import events, plan_approval, progress, run_requests, runs
from backfill.models import (
    OUTCOMES,
    DataMigration,
    EventStatus,
    MigrationKind,
    PlanItem,
    ProviderEventDelivery,
)
from revassure.admin_base import AuthenticatedHttpRequest
from revassure.flags import FeatureDisabled
from revassure.formatting import EMPTY, label, points, signed
from revassure.refusals import may

REFRESH_SECONDS = 5  # how often a page showing a live migration reloads itself
ITEMS_PER_PAGE = 50

# How a dry run's outcomes read: nothing happened, it would.
PLANNED: dict[str, str] = {
    EventStatus.APPLIED: "Would apply",
    EventStatus.DUPLICATE: "Duplicate",
    EventStatus.DEFERRED: "Would wait (deferred)",
    EventStatus.QUARANTINED: "Would be quarantined",
    EventStatus.FAILED: "Would fail",
}


def outcome_label(outcome: str, *, dry_run: bool) -> str:
    if dry_run:
        return PLANNED.get(outcome, label(outcome))
    return EventStatus(outcome).label if outcome in EventStatus.values else label(outcome)


class PlanApprovalForm(forms.Form):
    reason = forms.CharField(
        label="Why you approve it",
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        help_text="Kept on the plan: what you checked (the wallets it moves, the points).",
    )


if TYPE_CHECKING:
    _AdminBase = admin.ModelAdmin  # MigrationPage is mixed into DataMigrationAdmin
else:
    _AdminBase = object


class MigrationPage(_AdminBase):
    """The migration's page and its plan's buttons (a mixin of DataMigrationAdmin)."""

    def migration_page_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("<int:object_id>/run-bound/", wrap(self.run_bound_view), name="backfill_run_bound"),
            path("<int:object_id>/approve-plan/", wrap(self.approve_plan_view), name="backfill_approve_plan"),
        ]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        migration = self.get_object(request, object_id)
        if migration is None:
            return super().change_view(request, object_id, form_url, extra_context)
        context = {
            "title": f"{'Dry run' if migration.dry_run else 'Run'} #{migration.pk}: "
            f"{capfirst(migration.get_kind_display())}",
            "refresh_seconds": REFRESH_SECONDS if migration.status in progress.LIVE else None,
            "migration": migration,
            **self._items_context(request, migration),
            **self._bound_run_context(request, migration),
            **(extra_context or {}),
        }
        return super().change_view(request, object_id, form_url, context)

    def _items_context(self, request, migration: DataMigration) -> dict:
        """The per-line outcomes with reasons, paged: a dry run's plan items, a
        real run's deliveries (a stored replay's deliveries belong to earlier runs)."""
        rows: QuerySet[PlanItem] | QuerySet[ProviderEventDelivery]
        if migration.dry_run:
            rows = migration.plan_items.order_by("line")
            outcome_field = "outcome"
        elif migration.kind != MigrationKind.REPLAY_STORED:
            rows = migration.deliveries.order_by("line", "pk")
            outcome_field = "status"
        else:
            return {"items": None}
        chosen = request.GET.get("outcome", "")
        if chosen in OUTCOMES:
            rows = rows.filter(**{outcome_field: chosen})
        page = Paginator(rows, ITEMS_PER_PAGE).get_page(request.GET.get("items_page"))
        items = [self._item(row, migration.dry_run) for row in page.object_list]
        counts = [
            (outcome, outcome_label(outcome, dry_run=migration.dry_run), points(getattr(migration, outcome)))
            for outcome in OUTCOMES
            if getattr(migration, outcome)
        ]
        return {"items": items, "items_page": page, "items_outcome": chosen, "items_counts": counts}

    @staticmethod
    def _item(row, dry_run: bool) -> dict:
        if dry_run:
            outcome, amount = row.outcome, row.amount
        else:
            outcome, amount = row.status, None
            try:
                amount = events.parse(row.raw).amount
            except events.Unusable:
                pass
        return {
            "line": row.line,
            "event_id": row.event_id or EMPTY,
            "type": label(row.event_type) if row.event_type else EMPTY,
            "user_id": row.user_id or EMPTY,
            "amount": signed(amount) if amount is not None else EMPTY,
            "outcome": outcome,
            "outcome_label": outcome_label(outcome, dry_run=dry_run),
            "reason": row.reason,
        }

    def _bound_run_context(self, request, migration: DataMigration) -> dict:
        if not migration.dry_run:
            return {}
        refusal = plan_approval.approval_refusal(migration, request.user)
        return {
            "bound_runs": list(run_requests.bound_runs(migration).order_by("pk")),
            "can_run_bound": may(request.user, runs.PERMISSION),
            "bound_run_refusal": run_requests.bound_run_refusal(migration),
            "approval_text": plan_approval.approval_text(migration),
            # The form for a second person; said why not to one who approves plans.
            "approve_form": PlanApprovalForm()
            if not refusal and plan_approval.needs_approval(migration)
            else None,
            "approval_refusal": refusal
            if may(request.user, plan_approval.APPROVE) and migration.plan_approved_by_id is None
            else "",
        }

    def approve_plan_view(self, request: AuthenticatedHttpRequest, object_id: int) -> HttpResponse:
        """A second person approves a completed dry run's plan, from its page (POST only)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not may(request.user, plan_approval.APPROVE):
            raise PermissionDenied("only ops and finance approvers approve plans")
        plan = get_object_or_404(DataMigration, pk=object_id)
        form = PlanApprovalForm(request.POST)
        try:
            if not form.is_valid():
                raise plan_approval.PlanRefused("a reason is required to approve a plan")
            plan_approval.approve_plan(plan.pk, actor=request.user, reason=form.cleaned_data["reason"])
        except plan_approval.PlanRefused as exc:
            self.message_user(request, f"Refused: {exc}.", messages.ERROR)
        else:
            self.message_user(
                request,
                f"Plan {plan.pk} approved: it may now be run for real, bound to it.",
                messages.SUCCESS,
            )
        return HttpResponseRedirect(reverse("admin:backfill_datamigration_change", args=[plan.pk]))

    def run_bound_view(self, request: AuthenticatedHttpRequest, object_id: int) -> HttpResponse:
        """ "Run for real, bound to this plan", from a completed dry run's page."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not may(request.user, runs.PERMISSION):
            raise PermissionDenied("only ops start backfills")
        plan = get_object_or_404(DataMigration, pk=object_id)
        try:
            migration = run_requests.request_bound_run(plan.pk, actor=request.user)
        except (ValueError, FeatureDisabled) as exc:
            self.message_user(request, f"Refused: {exc}.", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:backfill_datamigration_change", args=[plan.pk]))
        self.message_user(
            request,
            f"Run {migration.pk} queued, bound to plan {plan.pk}: it plans the file again first and "
            "stops, writing nothing, if anything changed since.",
            messages.SUCCESS,
        )
        return HttpResponseRedirect(reverse("admin:backfill_datamigration_change", args=[migration.pk]))
