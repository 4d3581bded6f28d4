"""The admin of data migrations: the list, its columns and facts, and pausing,
resuming or cancelling them. The pages beyond the list are mixed in: a
migration's page and its plan (admin_migration_page.py), and the pages that
start a migration (admin_start.py). What the webhook intake received has its
admin in admin_intake.py, registered from here."""

from pathlib import Path
from typing import Any, cast

from django.contrib import admin, messages
from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, reverse
from django.utils.html import format_html, format_html_join
from django.utils.text import capfirst

import backfill.admin_intake  # noqa: F401  (registers the admins of what the webhook intake received)
from backfill import plan_approval, progress, runs
from backfill.admin_migration_page import REFRESH_SECONDS, MigrationPage, outcome_label
from backfill.admin_start import StartPages
from backfill.models import OUTCOMES, DataMigration, EventStatus, MigrationSource, MigrationStatus
from revassure.admin_base import ReadOnlyAdmin
from revassure.formatting import EMPTY, points, signed, when
from revassure.refusals import may


class ModeFilter(admin.SimpleListFilter):
    title = "mode"
    parameter_name = "mode"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("dry", "Dry run"), ("real", "Real")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[DataMigration]) -> QuerySet[DataMigration]:
        if self.value() in ("dry", "real"):
            return queryset.filter(dry_run=self.value() == "dry")
        return queryset


def _count_cell(obj: DataMigration, outcome: str):
    return points(getattr(obj, outcome))


@admin.register(DataMigration)
class DataMigrationAdmin(MigrationPage, StartPages, ReadOnlyAdmin):
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

    def get_urls(self) -> list[URLPattern]:
        return [*self.start_urls(), *self.migration_page_urls(), *super().get_urls()]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        live = DataMigration.objects.filter(status__in=progress.LIVE).exists()
        context = {"refresh_seconds": REFRESH_SECONDS if live else None, **(extra_context or {})}
        return super().changelist_view(request, context)

    # -- columns and facts ---------------------------------------------------------

    @admin.display(description="kind", ordering="kind")
    def kind_label(self, obj: DataMigration) -> str:
        return capfirst(obj.get_kind_display())

    @admin.display(description="mode", ordering="dry_run")
    def mode(self, obj: DataMigration) -> str:
        return "Dry run" if obj.dry_run else "Real"

    @admin.display(description="status", ordering="status")
    def status_label(self, obj: DataMigration) -> str:
        return obj.get_status_display()

    @admin.display(description="source")
    def source_label(self, obj: DataMigration) -> str:
        return capfirst(obj.get_source_display())

    @admin.display(description="file")
    def file(self, obj: DataMigration) -> str:
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
    def progress(self, obj: DataMigration) -> str:
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
    def rate(self, obj: DataMigration) -> str:
        rate = progress.of(obj).rate
        if rate is None:
            return EMPTY
        return f"{rate:,.1f}/s" if rate < 10 else f"{round(rate):,}/s"

    @admin.display(description="time left")
    def eta(self, obj: DataMigration) -> str:
        if obj.status == MigrationStatus.PAUSED:
            return "paused"
        if obj.status == MigrationStatus.COMPLETED:
            return "done"
        left = progress.of(obj).seconds_left
        return EMPTY if left is None else progress.duration(left)

    @admin.display(description="applied", ordering="applied")
    def applied_count(self, obj: DataMigration) -> str:
        return f"Would apply {points(obj.applied)}" if obj.dry_run else points(obj.applied)

    @admin.display(description="duplicate", ordering="duplicate")
    def duplicate_count(self, obj: DataMigration) -> str:
        return _count_cell(obj, "duplicate")

    @admin.display(description="deferred", ordering="deferred")
    def deferred_count(self, obj: DataMigration) -> str:
        return _count_cell(obj, "deferred")

    @admin.display(description="quarantined", ordering="quarantined")
    def quarantined_count(self, obj: DataMigration) -> str:
        return _count_cell(obj, "quarantined")

    @admin.display(description="failed", ordering="failed")
    def failed_count(self, obj: DataMigration) -> str:
        return _count_cell(obj, "failed")

    @admin.display(description="outcomes")
    def outcomes(self, obj: DataMigration) -> str:
        rows = [(outcome_label(name, dry_run=obj.dry_run), points(getattr(obj, name))) for name in OUTCOMES]
        return format_html(
            '<table class="ra-facts" id="migration-outcomes">{}'
            '<tr><th>Total</th><td class="numeric">{}</td></tr></table>',
            format_html_join("", '<tr><th>{}</th><td class="numeric">{}</td></tr>', rows),
            points(obj.total),
        )

    @admin.display(description="plan")
    def plan_summary(self, obj: DataMigration) -> str:
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
    def approval(self, obj: DataMigration) -> str:
        """A plan's approval (four eyes), on the plan and on each real run bound to it."""
        if obj.dry_run:
            return plan_approval.approval_text(obj) if obj.status == MigrationStatus.COMPLETED else EMPTY
        plan = DataMigration.objects.filter(pk=obj.parameters.get("plan") or 0).first()
        return f"Plan {plan.pk}: {plan_approval.approval_text(plan)}" if plan is not None else EMPTY

    @admin.display(description="bound to")
    def binding(self, obj: DataMigration) -> str:
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
    def error_text(self, obj: DataMigration) -> str:
        if not obj.error:
            return EMPTY
        return format_html('<strong class="ra-outcome-failed" id="migration-error">{}</strong>', obj.error)

    @admin.display(description="started by", ordering="started_by")
    def starter(self, obj: DataMigration) -> User | str:
        return obj.started_by or "system"

    @admin.display(description="created", ordering="created_at")
    def created(self, obj: DataMigration) -> str:
        return when(obj.created_at)

    @admin.display(description="started")
    def started(self, obj: DataMigration) -> str:
        return when(obj.started_at)

    @admin.display(description="finished")
    def finished(self, obj: DataMigration) -> str:
        return when(obj.finished_at)

    # -- actions -------------------------------------------------------------------

    def has_control_permission(self, request: HttpRequest) -> bool:
        return may(request.user, runs.PERMISSION)

    def _control(self, request, queryset, action):
        for migration in queryset:
            try:
                runs.set_status(migration.pk, action, actor=request.user)
            except (ValueError, PermissionError) as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:
                self.message_user(request, f"Migration {migration.pk}: {action} done.", messages.SUCCESS)

    @admin.action(description="Pause the selected migrations", permissions=["control"])
    def pause(self, request: HttpRequest, queryset: QuerySet[DataMigration]) -> None:
        self._control(request, queryset, "pause")

    @admin.action(description="Resume the selected migrations", permissions=["control"])
    def resume(self, request: HttpRequest, queryset: QuerySet[DataMigration]) -> None:
        self._control(request, queryset, "resume")

    @admin.action(description="Cancel the selected migrations", permissions=["control"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[DataMigration]) -> None:
        self._control(request, queryset, "cancel")
