import csv

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import HttpResponseNotAllowed, HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html

from reconciliation import services
from reconciliation.admin_changes import propose_heal_action
from reconciliation.models import ReconciliationRun, RunStatus, RunTrigger, Violation
from reconciliation.reports import describe_details
from revassure.admin_base import ReadOnlyAdmin
from revassure.flags import FeatureDisabled


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(ReadOnlyAdmin):
    change_list_template = "admin/reconciliation/reconciliationrun/change_list.html"
    change_form_template = "admin/reconciliation/reconciliationrun/change_form.html"
    list_display = [
        "id",
        "status",
        "started_at",
        "wallets_checked",
        "violations_link",
        "total_abs_drift",
        "liability_difference",
        "duration_display",
        "progress",
        "trigger",
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
                    "status",
                    "error",
                    "wallets_checked",
                    "violations_link",
                    "drift_count",
                    "malformed_count",
                    "total_abs_drift",
                ]
            },
        ),
        ("Liability", {"fields": ["total_wallet_points", "total_ledger_sum", "liability_difference"]}),
        ("Timing", {"fields": ["created_at", "started_at", "finished_at", "duration_display", "progress"]}),
        ("Request", {"fields": ["trigger", "requested_by", "scope_uids", "correlation_id"]}),
        ("Seal", {"fields": ["chain_seq", "checksum", "previous_checksum"]}),
    ]

    @admin.display(description="duration")
    def duration_display(self, run):
        duration = run.duration
        return f"{duration.total_seconds():.1f} s" if duration else "-"

    @admin.display(description="progress")
    def progress(self, run):
        if run.is_finished:
            return "done" if run.status == RunStatus.COMPLETED else "-"
        if run.status == RunStatus.PENDING:
            return "queued"
        if run.chunks_total is None:
            return f"{run.chunks_done} chunks done, still listing wallets"
        if run.chunks_total == 0:
            return "no wallets"
        return format_html(
            '<progress max="{}" value="{}"></progress> {}/{} chunks',
            run.chunks_total,
            run.chunks_done,
            run.chunks_done,
            run.chunks_total,
        )

    @admin.display(description="violations", ordering="violations_count")
    def violations_link(self, run):
        url = reverse("admin:reconciliation_violation_changelist") + f"?run__id__exact={run.pk}"
        return format_html('<a href="{}">{}</a>', url, run.violations_count)

    def get_urls(self):
        return [
            path("run-now/", self.admin_site.admin_view(self.run_now_view), name="reconciliation_run_now"),
            path(
                "<int:run_id>/export.csv",
                self.admin_site.admin_view(self.export_view),
                name="reconciliation_run_export",
            ),
            *super().get_urls(),
        ]

    def has_run_permission(self, request):
        return request.user.has_perm("reconciliation.run_reconciliation")

    def has_export_permission(self, request):
        return request.user.has_perm("reconciliation.export_reconciliationrun")

    def changelist_view(self, request, extra_context=None):
        in_progress = ReconciliationRun.objects.filter(status__in=[RunStatus.PENDING, RunStatus.RUNNING])
        extra_context = {
            **(extra_context or {}),
            "can_run": self.has_run_permission(request),
            "refresh_seconds": 5 if in_progress.exists() else None,
        }
        return super().changelist_view(request, extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "can_export": self.has_export_permission(request)}
        return super().change_view(request, object_id, form_url, extra_context)

    def run_now_view(self, request):
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

    def export_view(self, request, run_id):
        if not self.has_export_permission(request):
            raise PermissionDenied
        run = get_object_or_404(ReconciliationRun, pk=run_id)
        response = StreamingHttpResponse(_csv_rows(run), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="reconciliation-run-{run.pk}.csv"'
        return response


class _Echo:
    def write(self, value):
        return value


_CSV_HEADER = ["run_id", "uid", "kind", "wallet_points", "ledger_sum", "delta", "entries", "details"]


def _csv_rows(run):
    writer = csv.writer(_Echo())
    yield writer.writerow(_CSV_HEADER)
    for v in run.violations.order_by("uid").iterator(chunk_size=2000):
        details = describe_details(v.details)
        yield writer.writerow(
            [run.pk, _safe(v.uid), v.kind, v.wallet_points, v.ledger_sum, v.delta, v.entries, _safe(details)]
        )
    # The liability check closes every export, so a sheet on its own says what it covers.
    yield writer.writerow([])
    yield writer.writerow(["total_wallet_points", run.total_wallet_points])
    yield writer.writerow(["total_ledger_sum", run.total_ledger_sum])
    yield writer.writerow(["liability_difference", run.liability_difference])
    yield writer.writerow(["checksum", run.checksum])


# What makes a spreadsheet read a cell as a formula (OWASP, CSV injection): =, +, -, @, TAB, CR.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def _safe(value: str) -> str:
    """A text cell a spreadsheet shows as text: one starting like a formula gets a
    leading quote. Only text columns go through here; numeric columns hold ints,
    and a signed number there (a delta of -5) is data, not a formula."""
    return "'" + value if value.startswith(FORMULA_TRIGGERS) else value


class SignFilter(admin.SimpleListFilter):
    title = "sign"
    parameter_name = "sign"

    def lookups(self, request, model_admin):
        return [("over", "wallet above ledger"), ("under", "wallet below ledger")]

    def queryset(self, request, queryset):
        if self.value() == "over":
            return queryset.filter(delta__gt=0)
        if self.value() == "under":
            return queryset.filter(delta__lt=0)
        return queryset


class SizeFilter(admin.SimpleListFilter):
    title = "size of drift"
    parameter_name = "size"
    BUCKETS = {"small": (1, 10), "medium": (11, 100), "large": (101, 1000), "huge": (1001, None)}

    def lookups(self, request, model_admin):
        return [("small", "1-10"), ("medium", "11-100"), ("large", "101-1,000"), ("huge", "over 1,000")]

    def queryset(self, request, queryset):
        bucket = self.BUCKETS.get(self.value())
        if bucket is None:
            return queryset
        low, high = bucket
        over = Q(delta__gte=low) if high is None else Q(delta__gte=low, delta__lte=high)
        under = Q(delta__lte=-low) if high is None else Q(delta__lte=-low, delta__gte=-high)
        return queryset.filter(over | under)


@admin.register(Violation)
class ViolationAdmin(ReadOnlyAdmin):
    list_display = ["uid", "run_link", "kind", "wallet_points", "ledger_sum", "delta", "entries", "problem"]
    list_filter = ["kind", SignFilter, SizeFilter]
    list_select_related = ["run"]
    search_fields = ["=uid"]
    search_help_text = "Exact wallet uid"
    list_per_page = 100
    actions = ["propose_heal"]
    fields = ["run", "uid", "kind", "wallet_points", "ledger_sum", "delta", "entries", "details"]

    @admin.action(description="Propose heal for the selected violations", permissions=["propose"])
    def propose_heal(self, request, queryset):
        return propose_heal_action(self, request, queryset)

    def has_propose_permission(self, request):
        return request.user.has_perm("reconciliation.propose_balancerequest")

    @admin.display(description="problem")
    def problem(self, violation):
        return describe_details(violation.details) or "-"

    @admin.display(description="run", ordering="run")
    def run_link(self, violation):
        url = reverse("admin:reconciliation_reconciliationrun_change", args=[violation.run_id])
        return format_html('<a href="{}">{}</a>', url, violation.run_id)
