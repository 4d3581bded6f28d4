"""Admin for reconciliation runs (the sealed reports), read run by run and
exported as clean CSV tables; their violations are in admin_violations.py and the
breaks in admin_breaks.py. Numbers and times are shown through
revassure.formatting; CSVs keep raw values."""

from collections.abc import Iterator
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from reconciliation import services
from reconciliation.admin_violations import EXPORT_PERMISSION, RunFilter, violation_rows, with_heals
from reconciliation.models import (
    ReconciliationRun,
    RunStatus,
    RunTrigger,
)
from revassure.admin_base import AuthenticatedHttpRequest, ReadOnlyAdmin
from revassure.exports import csv_response
from revassure.flags import FeatureDisabled
from revassure.formatting import EMPTY, points, signed, when
from revassure.refusals import may


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(ReadOnlyAdmin):
    change_list_template = "admin/reconciliation/reconciliationrun/change_list.html"
    change_form_template = "admin/reconciliation/reconciliationrun/change_form.html"
    # Decisive columns first; wallets_display, duration_display,
    # trigger_display and requested_by are low priority (hidden when narrow).
    list_display = [
        "id",
        "status_display",
        "started",
        "violations_link",
        "drift_display",
        "liability_display",
        "progress",
        "wallets_display",
        "duration_display",
        "trigger_display",
        "requested_by",
    ]
    list_filter = ["status", "trigger"]
    list_select_related = ["requested_by"]
    date_hierarchy = "created_at"
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "status_display",
                    "error",
                    "wallets_display",
                    "violations_link",
                    "drift_count_display",
                    "malformed_count_display",
                    "drift_display",
                ]
            },
        ),
        (
            "Liability",
            {"fields": ["total_wallet_points_display", "total_ledger_sum_display", "liability_display"]},
        ),
        (
            "Timing",
            {
                "fields": [
                    "created",
                    "started",
                    "finished",
                    "duration_display",
                    "progress",
                    "checked_by_display",
                ]
            },
        ),
        (
            "Instant",
            {"fields": ["read_mode_display", "read_time_display", "read_mode_reason", "cleared_display"]},
        ),
        ("Request", {"fields": ["trigger_display", "requested_by", "scope_uids", "correlation_id"]}),
        ("Seal", {"fields": ["chain_seq", "checksum", "previous_checksum"]}),
    ]

    @admin.display(description="status", ordering="status")
    def status_display(self, run: ReconciliationRun) -> str:
        return run.get_status_display()

    @admin.display(description="trigger", ordering="trigger")
    def trigger_display(self, run: ReconciliationRun) -> str:
        return run.get_trigger_display()

    @admin.display(description="read")
    def read_mode_display(self, run: ReconciliationRun) -> str:
        return run.get_read_mode_display() if run.read_mode else EMPTY

    @admin.display(description="read time (T0)")
    def read_time_display(self, run: ReconciliationRun) -> str:
        # To the microsecond: the instant `verify_reports --rederive` reads at.
        return run.read_time.isoformat() if run.read_time else EMPTY

    @admin.display(description="chunks counted by")
    def checked_by_display(self, run: ReconciliationRun) -> str:
        """The machines whose workers counted the run's chunks (hostnames), once sealed."""
        if not run.checked_by:
            return EMPTY
        return ", ".join(
            f"{machine}: {points(chunks)} chunk{'' if chunks == 1 else 's'}"
            for machine, chunks in run.checked_by.items()
        )

    @admin.display(description="cleared at the re-check")
    def cleared_display(self, run: ReconciliationRun) -> str:
        cleared = run.cleared_at_recheck
        if not cleared:
            return EMPTY
        return format_html_join(
            mark_safe("<br>"),
            "{}: delta {} at T0 (points {}, ledger {}), agreed at the live re-check",
            ((c["uid"], signed(c["delta"]), c["wallet_points"], c["ledger_sum"]) for c in cleared),
        )

    @admin.display(description="started", ordering="started_at")
    def started(self, run: ReconciliationRun) -> str:
        return when(run.started_at)

    @admin.display(description="created", ordering="created_at")
    def created(self, run: ReconciliationRun) -> str:
        return when(run.created_at)

    @admin.display(description="finished", ordering="finished_at")
    def finished(self, run: ReconciliationRun) -> str:
        return when(run.finished_at)

    @admin.display(description="wallets", ordering="wallets_checked")
    def wallets_display(self, run: ReconciliationRun) -> str:
        return points(run.wallets_checked)

    @admin.display(description="drift (absolute)", ordering="total_abs_drift")
    def drift_display(self, run: ReconciliationRun) -> str:
        return points(run.total_abs_drift)

    @admin.display(description="drifted wallets", ordering="drift_count")
    def drift_count_display(self, run: ReconciliationRun) -> str:
        return points(run.drift_count)

    @admin.display(description="malformed wallets", ordering="malformed_count")
    def malformed_count_display(self, run: ReconciliationRun) -> str:
        return points(run.malformed_count)

    @admin.display(description="wallet points (total)")
    def total_wallet_points_display(self, run: ReconciliationRun) -> str:
        return points(run.total_wallet_points)

    @admin.display(description="ledger sum (total)")
    def total_ledger_sum_display(self, run: ReconciliationRun) -> str:
        return points(run.total_ledger_sum)

    @admin.display(description="liability (wallets − ledgers)")
    def liability_display(self, run: ReconciliationRun) -> str:
        return signed(run.liability_difference)

    @admin.display(description="duration")
    def duration_display(self, run: ReconciliationRun) -> str:
        duration = run.duration
        return f"{duration.total_seconds():,.1f} s" if duration else EMPTY

    @admin.display(description="progress")
    def progress(self, run: ReconciliationRun) -> str:
        if run.is_finished:
            return "Done" if run.status == RunStatus.COMPLETED else run.get_status_display()
        if run.status == RunStatus.PENDING:
            return "Queued"
        if run.chunks_total is None:
            return f"{points(run.chunks_done)} chunks done, still listing wallets"
        if run.chunks_total == 0:
            return "No wallets"
        return format_html(
            '<progress max="{}" value="{}"></progress> {}/{} chunks',
            run.chunks_total,
            run.chunks_done,
            points(run.chunks_done),
            points(run.chunks_total),
        )

    @admin.display(description="violations", ordering="violations_count")
    def violations_link(self, run: ReconciliationRun) -> str:
        url = reverse("admin:reconciliation_violation_changelist") + f"?{RunFilter.parameter_name}={run.pk}"
        return format_html('<a href="{}">{}</a>', url, points(run.violations_count))

    def get_urls(self) -> list[URLPattern]:
        return [
            path("run-now/", self.admin_site.admin_view(self.run_now_view), name="reconciliation_run_now"),
            path(
                "<int:run_id>/export.csv",
                self.admin_site.admin_view(self.export_view),
                name="reconciliation_run_export",
            ),
            path(
                "<int:run_id>/summary.csv",
                self.admin_site.admin_view(self.summary_view),
                name="reconciliation_run_summary",
            ),
            *super().get_urls(),
        ]

    def has_run_permission(self, request: HttpRequest) -> bool:
        return may(request.user, "reconciliation.run_reconciliation")

    def has_export_permission(self, request: HttpRequest) -> bool:
        return may(request.user, EXPORT_PERMISSION)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        in_progress = ReconciliationRun.objects.filter(status__in=[RunStatus.PENDING, RunStatus.RUNNING])
        extra_context = {
            **(extra_context or {}),
            "can_run": self.has_run_permission(request),
            "refresh_seconds": 5 if in_progress.exists() else None,
        }
        return super().changelist_view(request, extra_context)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        extra_context = {
            **(extra_context or {}),
            "can_export": self.has_export_permission(request),
            "run_filter": RunFilter.parameter_name,
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def run_now_view(self, request: AuthenticatedHttpRequest) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_run_permission(request):
            raise PermissionDenied
        changelist = reverse("admin:reconciliation_reconciliationrun_changelist")
        try:
            run = services.request_run(actor=request.user, trigger=RunTrigger.ADMIN)
        except FeatureDisabled as exc:
            self.message_user(request, f"Reconciliation refused: {exc}.", messages.ERROR)
            return HttpResponseRedirect(changelist)
        self.message_user(
            request, f"Reconciliation run {run.pk} queued; the workers will pick it up.", messages.SUCCESS
        )
        return HttpResponseRedirect(changelist)

    def export_view(self, request: HttpRequest, run_id: int) -> StreamingHttpResponse:
        """The run's violations: one header row, then one row per violation; nothing after."""
        if not self.has_export_permission(request):
            raise PermissionDenied
        run = get_object_or_404(ReconciliationRun, pk=run_id)
        violations = with_heals(run.violations.order_by("uid"))
        return csv_response(violation_rows(violations), f"reconciliation-run-{run.pk}.csv")

    def summary_view(self, request: HttpRequest, run_id: int) -> StreamingHttpResponse:
        """The run's counts, liability check and seal: a one-row table of its own."""
        if not self.has_export_permission(request):
            raise PermissionDenied
        run = get_object_or_404(ReconciliationRun, pk=run_id)
        return csv_response(summary_rows(run), f"reconciliation-run-{run.pk}-summary.csv")


# -- CSV -----------------------------------------------------------------------


SUMMARY_HEADER = [
    "run_id",
    "status",
    "wallets_checked",
    "violations_count",
    "drift_count",
    "malformed_count",
    "total_abs_drift",
    "total_wallet_points",
    "total_ledger_sum",
    "liability_difference",
    "started_at",
    "finished_at",
    "chain_seq",
    "checksum",
    "previous_checksum",
]


def summary_rows(run: ReconciliationRun) -> Iterator[list[Any]]:
    yield SUMMARY_HEADER
    yield [
        run.pk,
        run.status,
        run.wallets_checked,
        run.violations_count,
        run.drift_count,
        run.malformed_count,
        run.total_abs_drift,
        run.total_wallet_points,
        run.total_ledger_sum,
        run.liability_difference,
        run.started_at.isoformat() if run.started_at else "",
        run.finished_at.isoformat() if run.finished_at else "",
        run.chain_seq or "",
        run.checksum,
        run.previous_checksum,
    ]
