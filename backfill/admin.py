from pathlib import Path
from typing import cast

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.text import capfirst

from backfill import completeness, drain, events, plan_approval, progress, reversals, runs
from backfill.models import (
    OUTCOMES,
    DataMigration,
    EventStatus,
    MigrationKind,
    MigrationSource,
    MigrationStatus,
    PlanItem,
    ProviderEventDelivery,
    RejectedWebhook,
)
from backfill.uploads import BadUpload
from revassure.admin_base import ReadOnlyAdmin
from revassure.firestore import get_gateway
from revassure.flags import FeatureDisabled
from revassure.formatting import EMPTY, label, points, signed, size, when

PERMISSION = "backfill.change_datamigration"
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


class ExportUploadForm(forms.Form):
    export = forms.FileField(
        label="Export file",
        help_text="JSON Lines: one provider event (a JSON object) per line, as PayNow exports them.",
    )
    dry_run = forms.BooleanField(
        required=False,
        initial=True,
        label="Dry run",
        help_text="Plan only: every line with its outcome and reason, nothing written to Firestore.",
    )


class ReversalUploadForm(forms.Form):
    export = forms.FileField(
        label="Reversal CSV",
        help_text=f"Finance's export with the columns {','.join(reversals.COLUMNS)}.",
    )
    dry_run = forms.BooleanField(
        required=False,
        initial=True,
        label="Dry run",
        help_text="Plan only: every row with its outcome and reason, nothing written to Firestore.",
    )


class RerunForm(forms.Form):
    dry_run = forms.BooleanField(
        required=False,
        initial=True,
        label="Dry run",
        help_text="Plan only: every event with its outcome and reason, nothing written to Firestore.",
    )


class PlanApprovalForm(forms.Form):
    reason = forms.CharField(
        label="Why you approve it",
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        help_text="Kept on the plan: what you checked (the wallets it moves, the points).",
    )


class ModeFilter(admin.SimpleListFilter):
    title = "mode"
    parameter_name = "mode"

    def lookups(self, request, model_admin):
        return [("dry", "Dry run"), ("real", "Real")]

    def queryset(self, request, queryset):
        if self.value() in ("dry", "real"):
            return queryset.filter(dry_run=self.value() == "dry")
        return queryset


def _count_cell(obj: DataMigration, outcome: str):
    return points(getattr(obj, outcome))


@admin.register(DataMigration)
class DataMigrationAdmin(ReadOnlyAdmin):
    change_list_template = "admin/backfill/datamigration/change_list.html"
    change_form_template = "admin/backfill/datamigration/change_form.html"
    list_display = [
        "id",
        "kind_label",
        "mode",
        "status_label",
        "progress",
        "rate",
        "eta",
        "applied_count",
        "duplicate_count",
        "deferred_count",
        "quarantined_count",
        "failed_count",
        "starter",
        "created",
    ]
    list_display_links = ["id", "kind_label"]
    list_filter = ["status", "kind", "source", ModeFilter]
    list_select_related = ["started_by"]
    fields = [
        "kind_label",
        "mode",
        "status_label",
        "source_label",
        "file",
        "progress",
        "rate",
        "eta",
        "outcomes",
        "plan_summary",
        "approval",
        "binding",
        "error_text",
        "starter",
        "correlation_id",
        "created",
        "started",
        "finished",
    ]
    readonly_fields = cast(list[str], fields)  # the names above, none grouped
    actions = ["pause", "resume", "cancel"]

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("upload/", wrap(self.upload_view), name="backfill_upload"),
            path("upload-reversals/", wrap(self.upload_reversals_view), name="backfill_upload_reversals"),
            path("rerun-stored/", wrap(self.rerun_stored_view), name="backfill_rerun_stored"),
            path("<int:object_id>/run-bound/", wrap(self.run_bound_view), name="backfill_run_bound"),
            path("<int:object_id>/approve-plan/", wrap(self.approve_plan_view), name="backfill_approve_plan"),
            *super().get_urls(),
        ]

    # -- pages -------------------------------------------------------------------

    def changelist_view(self, request, extra_context=None):
        live = DataMigration.objects.filter(status__in=progress.LIVE).exists()
        context = {"refresh_seconds": REFRESH_SECONDS if live else None, **(extra_context or {})}
        return super().changelist_view(request, context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
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
            "bound_runs": list(runs.bound_runs(migration).order_by("pk")),
            "can_run_bound": request.user.has_perm(PERMISSION),
            "bound_run_refusal": runs.bound_run_refusal(migration),
            "approval_text": plan_approval.approval_text(migration),
            # The form for a second person; said why not to one who approves plans.
            "approve_form": PlanApprovalForm()
            if not refusal and plan_approval.needs_approval(migration)
            else None,
            "approval_refusal": refusal
            if request.user.has_perm(plan_approval.APPROVE) and migration.plan_approved_by_id is None
            else "",
        }

    def approve_plan_view(self, request, object_id: int):
        """A second person approves a completed dry run's plan, from its page (POST only)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not request.user.has_perm(plan_approval.APPROVE):
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

    def upload_view(self, request):
        """Replay an uploaded export (as `replay_webhooks` does), in a worker."""
        return self._upload(
            request,
            ExportUploadForm,
            kind=MigrationKind.REPLAY_FILE,
            title="Replay an export",
            intro=(
                "Each event is stored raw, then applied once. Start with a dry run: it lists every line "
                "with its outcome and reason and writes nothing; its page then offers to run it for "
                "real, bound to that plan."
            ),
        )

    def upload_reversals_view(self, request):
        """Backfill reversals from finance's CSV (as `backfill_reversals` does), in a worker."""
        return self._upload(
            request,
            ReversalUploadForm,
            kind=MigrationKind.REVERSAL_CSV,
            title="Backfill reversals from a CSV",
            intro=(
                "Each row becomes a refund or a chargeback and goes through the replay's rules: applied "
                "once, after its payment, never beyond it. Rows that cannot be read are quarantined "
                "with the reason. Start with a dry run."
            ),
        )

    def _upload(self, request, form_class, *, kind: str, title: str, intro: str):
        if not request.user.has_perm(PERMISSION):
            raise PermissionDenied("only ops start backfills")
        form = form_class(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            try:
                migration = runs.request_file_replay(
                    form.cleaned_data["export"],
                    dry_run=form.cleaned_data["dry_run"],
                    actor=request.user,
                    kind=kind,
                )
            except BadUpload as exc:
                form.add_error("export", f"Refused: {exc}.")
            except plan_approval.PlanRequired as exc:
                form.add_error("dry_run", f"Refused: {exc}.")
            except FeatureDisabled as exc:
                form.add_error(None, f"Backfill refused: {exc}")
            else:
                what = "Dry run" if migration.dry_run else "Replay"
                self.message_user(request, f"{what} {migration.pk} queued; its progress shows here.")
                return HttpResponseRedirect(
                    reverse("admin:backfill_datamigration_change", args=[migration.pk])
                )
        return TemplateResponse(
            request,
            "admin/revassure/form_page.html",
            {
                **self.admin_site.each_context(request),
                "title": title,
                "intro": intro,
                "form": form,
                "multipart": True,
                "buttons": [("upload", "Start")],
                "back_url": reverse("admin:backfill_datamigration_changelist"),
                "back_label": "Data migrations",
            },
        )

    def rerun_stored_view(self, request):
        """Re-run the stored events not applied yet, quarantined and failed ones
        included (after a fix): a dry run first, as for a file."""
        if not request.user.has_perm(PERMISSION):
            raise PermissionDenied("only ops start backfills")
        form = RerunForm(request.POST if request.method == "POST" else None)  # unticked: an empty POST
        if request.method == "POST" and form.is_valid():
            try:
                migration = runs.request_stored_replay(
                    actor=request.user, include_quarantined=True, dry_run=form.cleaned_data["dry_run"]
                )
            except plan_approval.PlanRequired as exc:
                form.add_error("dry_run", f"Refused: {exc}.")
            except FeatureDisabled as exc:
                form.add_error(None, f"Backfill refused: {exc}")
            else:
                what = "Dry run" if migration.dry_run else "Re-run"
                self.message_user(request, f"{what} {migration.pk} queued; its progress shows here.")
                return HttpResponseRedirect(
                    reverse("admin:backfill_datamigration_change", args=[migration.pk])
                )
        waiting = runs.stored_deliveries({"statuses": [*runs.REPLAYABLE, EventStatus.QUARANTINED]}).count()
        return TemplateResponse(
            request,
            "admin/revassure/form_page.html",
            {
                **self.admin_site.each_context(request),
                "title": "Re-run stored events",
                "intro": (
                    f"{points(waiting)} stored event(s) are not applied (received, deferred, failed or "
                    "quarantined). Fix what quarantined them first (a missing wallet, the provider's data); "
                    "each is applied once, by the webhook's rules. Start with a dry run: its page lists "
                    "each event with its outcome and offers the real run, bound to that plan."
                ),
                "form": form,
                "buttons": [("rerun", "Start")],
                "back_url": reverse("admin:backfill_datamigration_changelist"),
                "back_label": "Data migrations",
            },
        )

    def run_bound_view(self, request, object_id: int):
        """ "Run for real, bound to this plan", from a completed dry run's page."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not request.user.has_perm(PERMISSION):
            raise PermissionDenied("only ops start backfills")
        plan = get_object_or_404(DataMigration, pk=object_id)
        try:
            migration = runs.request_bound_run(plan.pk, actor=request.user)
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

    # -- columns and facts ---------------------------------------------------------

    @admin.display(description="kind", ordering="kind")
    def kind_label(self, obj):
        return capfirst(obj.get_kind_display())

    @admin.display(description="mode", ordering="dry_run")
    def mode(self, obj):
        return "Dry run" if obj.dry_run else "Real"

    @admin.display(description="status", ordering="status")
    def status_label(self, obj):
        return obj.get_status_display()

    @admin.display(description="source")
    def source_label(self, obj):
        return capfirst(obj.get_source_display())

    @admin.display(description="file")
    def file(self, obj):
        """The file's name, never where the server keeps it."""
        params = obj.parameters
        if obj.source == MigrationSource.DATABASE:
            statuses = ", ".join(EventStatus(s).label.lower() for s in params.get("statuses", []))
            window = ""
            if params.get("since") or params.get("until"):
                window = (
                    f", received from {params.get('since') or 'the start'} to {params.get('until') or 'now'}"
                )
            return f"Stored deliveries: {statuses or 'any'}{window}"
        return params.get("name") or Path(params.get("path", "")).name or EMPTY

    @admin.display(description="progress")
    def progress(self, obj):
        now = progress.of(obj)
        if now.expected is None:
            return format_html('<span class="ra-progress-text">{} handled</span>', points(now.done))
        return format_html(
            '<progress class="ra-progress" max="{}" value="{}"></progress> '
            '<span class="ra-progress-text">{} of {}</span>',
            max(now.expected, 1),
            min(now.done, now.expected),
            points(now.done),
            points(now.expected),
        )

    @admin.display(description="rate")
    def rate(self, obj):
        rate = progress.of(obj).rate
        if rate is None:
            return EMPTY
        return f"{rate:,.1f}/s" if rate < 10 else f"{round(rate):,}/s"

    @admin.display(description="time left")
    def eta(self, obj):
        if obj.status == MigrationStatus.PAUSED:
            return "paused"
        if obj.status == MigrationStatus.COMPLETED:
            return "done"
        left = progress.of(obj).seconds_left
        return EMPTY if left is None else progress.duration(left)

    @admin.display(description="applied", ordering="applied")
    def applied_count(self, obj):
        return f"Would apply {points(obj.applied)}" if obj.dry_run else points(obj.applied)

    @admin.display(description="duplicate", ordering="duplicate")
    def duplicate_count(self, obj):
        return _count_cell(obj, "duplicate")

    @admin.display(description="deferred", ordering="deferred")
    def deferred_count(self, obj):
        return _count_cell(obj, "deferred")

    @admin.display(description="quarantined", ordering="quarantined")
    def quarantined_count(self, obj):
        return _count_cell(obj, "quarantined")

    @admin.display(description="failed", ordering="failed")
    def failed_count(self, obj):
        return _count_cell(obj, "failed")

    @admin.display(description="outcomes")
    def outcomes(self, obj):
        rows = [(outcome_label(name, dry_run=obj.dry_run), points(getattr(obj, name))) for name in OUTCOMES]
        return format_html(
            '<table class="ra-facts" id="migration-outcomes">{}'
            '<tr><th>Total</th><td class="numeric">{}</td></tr></table>',
            format_html_join("", '<tr><th>{}</th><td class="numeric">{}</td></tr>', rows),
            points(obj.total),
        )

    @admin.display(description="plan")
    def plan_summary(self, obj):
        if not obj.dry_run or not obj.plan:
            return EMPTY
        wallets = obj.plan.get("wallets", {})
        return format_html(
            "{} points moved in {} wallet(s); checksum <code>{}</code>",
            signed(obj.plan.get("points_moved", 0)),
            points(len(wallets)),
            obj.plan_checksum[:16] + "…" if obj.plan_checksum else EMPTY,
        )

    @admin.display(description="second person")
    def approval(self, obj):
        """A plan's approval (four eyes), on the plan and on each real run bound to it."""
        if obj.dry_run:
            return plan_approval.approval_text(obj) if obj.status == MigrationStatus.COMPLETED else EMPTY
        plan = DataMigration.objects.filter(pk=obj.parameters.get("plan") or 0).first()
        return f"Plan {plan.pk}: {plan_approval.approval_text(plan)}" if plan is not None else EMPTY

    @admin.display(description="bound to")
    def binding(self, obj):
        plan_id = obj.parameters.get("plan")
        if plan_id is None:
            return EMPTY
        url = reverse("admin:backfill_datamigration_change", args=[plan_id])
        check = obj.parameters.get("plan_check")
        if check is None:
            return format_html('plan <a href="{}">#{}</a> (checked before the first line)', url, plan_id)
        check_url = reverse("admin:backfill_datamigration_change", args=[check])
        return format_html(
            'plan <a href="{}">#{}</a>, checked unchanged by dry run <a href="{}">#{}</a>',
            url,
            plan_id,
            check_url,
            check,
        )

    @admin.display(description="error")
    def error_text(self, obj):
        if not obj.error:
            return EMPTY
        return format_html('<strong class="ra-outcome-failed" id="migration-error">{}</strong>', obj.error)

    @admin.display(description="started by", ordering="started_by")
    def starter(self, obj):
        return obj.started_by or "system"

    @admin.display(description="created", ordering="created_at")
    def created(self, obj):
        return when(obj.created_at)

    @admin.display(description="started")
    def started(self, obj):
        return when(obj.started_at)

    @admin.display(description="finished")
    def finished(self, obj):
        return when(obj.finished_at)

    # -- actions -------------------------------------------------------------------

    def has_control_permission(self, request):
        return request.user.has_perm(PERMISSION)

    def _control(self, request, queryset, action):
        for migration in queryset:
            try:
                runs.set_status(migration.pk, action, actor=request.user)
            except (ValueError, PermissionError) as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:
                self.message_user(request, f"Migration {migration.pk}: {action} done.", messages.SUCCESS)

    @admin.action(description="Pause the selected migrations", permissions=["control"])
    def pause(self, request, queryset):
        self._control(request, queryset, "pause")

    @admin.action(description="Resume the selected migrations", permissions=["control"])
    def resume(self, request, queryset):
        self._control(request, queryset, "resume")

    @admin.action(description="Cancel the selected migrations", permissions=["control"])
    def cancel(self, request, queryset):
        self._control(request, queryset, "cancel")


@admin.register(ProviderEventDelivery)
class ProviderEventDeliveryAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "received",
        "source_label",
        "event_id",
        "type_label",
        "user_id",
        "status_label",
        "reason",
        "migration_link",
    ]
    list_filter = ["status", "source", "event_type"]
    list_select_related = ["migration"]
    search_fields = ["=event_id", "=user_id", "=entry_id"]
    search_help_text = "Exact event id, wallet uid or ledger entry id"
    fields = [
        "received",
        "source_label",
        "event_id",
        "type_label",
        "user_id",
        "entry_id",
        "status_label",
        "reason",
        "attempts",
        "applied",
        "migration_link",
        "line",
        "raw_body",
    ]
    readonly_fields = cast(list[str], fields)  # the names above, none grouped

    change_list_template = "admin/backfill/providereventdelivery/change_list.html"

    def changelist_view(self, request, extra_context=None):
        """Above the list: the webhook deliveries waiting for a worker and how
        long the oldest has waited (the page reloads while any wait)."""
        count, oldest = drain.queue_state()
        context = {
            "waiting": count,
            "oldest_wait": waited(oldest),
            "refresh_seconds": REFRESH_SECONDS if count else None,
            **(extra_context or {}),
        }
        return super().changelist_view(request, context)

    @admin.display(description="received", ordering="received_at")
    def received(self, obj):
        return when(obj.received_at)

    @admin.display(description="body size", ordering="body_bytes")
    def body_size(self, obj):
        return size(obj.body_bytes)

    @admin.display(description="applied")
    def applied(self, obj):
        return when(obj.applied_at)

    @admin.display(description="source", ordering="source")
    def source_label(self, obj):
        return obj.get_source_display()

    @admin.display(description="type", ordering="event_type")
    def type_label(self, obj):
        return label(obj.event_type) if obj.event_type else EMPTY

    @admin.display(description="status", ordering="status")
    def status_label(self, obj):
        return obj.get_status_display()

    @admin.display(description="migration", ordering="migration")
    def migration_link(self, obj):
        if obj.migration_id is None:
            return EMPTY
        url = reverse("admin:backfill_datamigration_change", args=[obj.migration_id])
        return format_html('<a href="{}">#{}</a>', url, obj.migration_id)

    @admin.display(description="body as received")
    def raw_body(self, obj):
        return format_html('<pre class="ra-raw">{}</pre>', obj.raw)

    def get_urls(self):
        view = self.admin_site.admin_view(self.completeness_view)
        return [path("completeness/", view, name="backfill_completeness"), *super().get_urls()]

    def completeness_view(self, request):
        """The stored events without a ledger entry, and one button to replay them all."""
        if not request.user.has_perm("backfill.view_providereventdelivery"):
            raise PermissionDenied("your role does not include the provider events")
        gateway = get_gateway()
        if request.method == "POST":
            if not request.user.has_perm(PERMISSION):
                raise PermissionDenied("only ops replay gaps")
            try:
                gaps, migration = completeness.replay_gaps(gateway, actor=request.user)
            except FeatureDisabled as exc:
                self.message_user(request, f"Backfill refused: {exc}.", messages.ERROR)
                return HttpResponseRedirect(reverse("admin:backfill_completeness"))
            if migration.dry_run:
                self.message_user(
                    request,
                    f"{len(gaps)} gap(s) put back in line; they name more points than one person replays "
                    f"alone (BACKFILL_PLAN_APPROVAL_ABOVE): dry run {migration.pk} plans their replay, "
                    "writing nothing, for a second person to approve.",
                    messages.WARNING,
                )
            else:
                self.message_user(
                    request, f"{len(gaps)} gap(s) put back in line; migration {migration.pk} replays them."
                )
            return HttpResponseRedirect(reverse("admin:backfill_datamigration_change", args=[migration.pk]))
        found = completeness.check(gateway)
        gaps = found.gaps
        facts = [
            (
                f"{g.user_id} / {g.entry_id}",
                f"{g.get_status_display()}: {g.reason or EMPTY} (event {g.event_id})",
            )
            for g in gaps
        ] + [
            (d["entry_id"], f"credited to {len(d['wallets'])} wallets: {', '.join(d['wallets'])}")
            for d in found.doubles
        ]
        can_replay = bool(gaps) and request.user.has_perm(PERMISSION)
        return TemplateResponse(
            request,
            "admin/revassure/form_page.html",
            {
                **self.admin_site.each_context(request),
                "title": "Completeness of the ledger",
                "intro": (
                    f"{points(len(gaps))} stored payment(s) or reversal(s) have no ledger entry."
                    if gaps
                    else "Every stored payment and reversal has its ledger entry."
                )
                + (
                    f" {points(len(found.doubles))} payment(s) or reversal(s) are credited to more than one "
                    "wallet: reverse the extra credits with a manual adjustment."
                    if found.doubles
                    else ""
                ),
                "facts": facts,
                "form": forms.Form(),
                "buttons": [("replay", "Replay all gaps")] if can_replay else [],
                "back_url": reverse("admin:backfill_providereventdelivery_changelist"),
                "back_label": "Provider events",
            },
        )


@admin.register(RejectedWebhook)
class RejectedWebhookAdmin(ReadOnlyAdmin):
    """Webhook requests refused for their signature: when, from where, why."""

    list_display = ["received", "reason", "remote_addr", "body_size"]
    list_filter = ["reason"]
    search_fields = ["=remote_addr", "=body_sha256"]
    search_help_text = "Exact sender address or SHA-256 of the body"
    fields = ["received", "reason", "remote_addr", "body_size", "body_sha256"]
    readonly_fields = cast(list[str], fields)  # the names above, none grouped
    date_hierarchy = "received_at"

    @admin.display(description="received", ordering="received_at")
    def received(self, obj):
        return when(obj.received_at)

    @admin.display(description="body size", ordering="body_bytes")
    def body_size(self, obj):
        return size(obj.body_bytes)


def waited(seconds: float) -> str:
    """A wait as people say it: 4 s, 3 min 20 s, 2 h 5 min, 3 days 4 h."""
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} day{'s' if days != 1 else ''} {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"
