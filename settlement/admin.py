"""Admin for settlement runs (the sealed reports): the money at stake per
outcome at the top of a run, its rows as CSV, and an upload that a worker
processes with progress. The rows have their admin in admin_rows.py,
registered from here. Pages call services; none carries rules of its own."""

import secrets
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet, Sum
from django.db.models.functions import Abs
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from revassure import formatting
from revassure.admin_base import AuthenticatedHttpRequest, ReadOnlyAdmin
from revassure.exports import csv_response
from revassure.formatting import EMPTY, points, size, when
from revassure.refusals import may
from settlement import reports, services, statement, storage
from settlement.admin_rows import EXPORT_PERMISSION, row_table, rows_url
from settlement.models import BREAKS, Outcome, RunStatus, RunTrigger, SettlementRow, SettlementRun

RUN_PERMISSION = "settlement.run_settlement"
UPLOAD_PAGE = "admin/settlement/upload.html"


def money(pairs: Iterable[tuple[str, Decimal]]) -> str:
    """[(currency, amount), ...] as "12,477.40 EUR, 24.00 USD"."""
    return ", ".join(formatting.money(amount, currency) for currency, amount in pairs) or EMPTY


def total_at_stake(run: SettlementRun) -> dict:
    """The break rows of a run added up: rows, points and money per currency,
    each amount counted whatever its sign (an unreversed refund of −5.00 EUR puts
    5.00 EUR at stake). Matched rows are not at stake."""
    rows = SettlementRow.objects.filter(run=run, outcome__in=BREAKS)
    per_currency = (
        rows.exclude(amount=None)
        .values_list("currency")
        .annotate(total=Sum(Abs("amount")))
        .order_by("currency")
    )
    counted = rows.aggregate(rows=Count("id"), points=Sum(Abs("points")))
    return {
        "rows": points(counted["rows"]),
        "points_text": points(counted["points"] or 0),
        "money_text": money(per_currency),
    }


class UploadForm(forms.Form):
    statement = forms.FileField(
        help_text="PayNow's settlement statement, CSV (" + ",".join(statement.COLUMNS) + ")"
    )


@admin.register(SettlementRun)
class SettlementRunAdmin(ReadOnlyAdmin):
    change_list_template = "admin/settlement/settlementrun/change_list.html"
    change_form_template = "admin/settlement/settlementrun/change_form.html"
    list_display = [
        "id",
        "status",
        "started",
        "source",
        "rows_display",
        "breaks_link",
        "progress",
        "repeat",
        "trigger",
        "requested_by",
    ]
    list_filter = ["status", "trigger"]
    list_select_related = ["requested_by"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "status",
                    "error",
                    "source",
                    "file_sha256",
                    "file_size",
                    "repeat",
                    "rows_display",
                    "malformed_display",
                ]
            },
        ),
        ("Period", {"fields": ["period_start", "period_end", "period_given"]}),
        ("Timing", {"fields": ["created_at", "started", "finished", "progress", "matched_by"]}),
        ("Request", {"fields": ["trigger", "requested_by", "correlation_id"]}),
        ("Seal", {"fields": ["chain_seq", "checksum", "previous_checksum"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[SettlementRun]:
        # A dry run's scratch is nobody's report: it is gone when the dry run ends.
        return super().get_queryset(request).exclude(status=RunStatus.DRY_RUN)

    @admin.display(description="started", ordering="started_at")
    def started(self, run: SettlementRun) -> str:
        return when(run.started_at)

    @admin.display(description="finished", ordering="finished_at")
    def finished(self, run: SettlementRun) -> str:
        return when(run.finished_at)

    @admin.display(description="matched by")
    def matched_by(self, run: SettlementRun) -> str:
        """The process that matched it (hostname:pid), and how many workers took it
        (more than one when a worker died and the sweep handed the run on)."""
        if not run.worker:
            return EMPTY
        return (
            run.worker
            if run.attempts <= 1
            else f"{run.worker} (worker {run.attempts}: earlier ones were lost)"
        )

    @admin.display(description="malformed rows")
    def malformed_display(self, run: SettlementRun) -> str:
        return points(run.malformed_rows)

    @admin.display(description="file size")
    def file_size(self, run: SettlementRun) -> str:
        return size(run.file_bytes)

    @admin.display(description="rows", ordering="rows")
    def rows_display(self, run: SettlementRun) -> str:
        return points(run.rows)

    @admin.display(description="breaks")
    def breaks_link(self, run: SettlementRun) -> str:
        count = sum(getattr(run, name) for name in BREAKS)
        return format_html('<a href="{}">{}</a>', rows_url(run.pk), points(count))

    @admin.display(description="same file as")
    def repeat(self, run: SettlementRun) -> str:
        if run.repeat_of_id is None:
            return EMPTY
        url = reverse("admin:settlement_settlementrun_change", args=[run.repeat_of_id])
        return format_html('<a href="{}">run {}</a>', url, run.repeat_of_id)

    @admin.display(description="progress")
    def progress(self, run: SettlementRun) -> str:
        if run.status == RunStatus.COMPLETED:
            return "Done"
        if run.status == RunStatus.FAILED:
            return "Failed"
        if run.status == RunStatus.PENDING:
            return "Queued"
        if not run.expected_rows:
            return f"{points(run.rows)} rows"
        return format_html(
            '<progress max="{}" value="{}"></progress> {} of about {} rows',
            run.expected_rows,
            min(run.rows, run.expected_rows),
            points(run.rows),
            points(run.expected_rows),
        )

    def has_run_permission(self, request: HttpRequest) -> bool:
        return may(request.user, RUN_PERMISSION)

    def has_export_permission(self, request: HttpRequest) -> bool:
        return may(request.user, EXPORT_PERMISSION)

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("upload/", wrap(self.upload_view), name="settlement_upload"),
            path("<int:run_id>/export.csv", wrap(self.export_view), name="settlement_run_export"),
            *super().get_urls(),
        ]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        live = SettlementRun.objects.filter(status__in=[RunStatus.PENDING, RunStatus.RUNNING]).exists()
        extra_context = {
            **(extra_context or {}),
            "can_upload": self.has_run_permission(request),
            "refresh_seconds": 5 if live else None,
        }
        return super().changelist_view(request, extra_context)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        run = self.get_object(request, object_id)
        if run is not None:
            # Breaks first (what needs work), matched last and apart: not at stake.
            stake = reports.at_stake(run)
            for item in stake:
                item["url"] = rows_url(run.pk, item["outcome"])
                item["rows_text"] = points(item["rows"])
                item["money_text"] = money(item["money"])
                item["points_text"] = points(item["points"])
            extra_context = {
                **(extra_context or {}),
                "stake": [item for item in stake if item["outcome"] in BREAKS],
                "stake_total": total_at_stake(run),
                "matched": [item for item in stake if item["outcome"] not in BREAKS],
                "malformed_url": rows_url(run.pk, Outcome.MALFORMED),
                "can_export": self.has_export_permission(request),
                "refresh_seconds": 5 if not run.is_finished else None,
            }
        return super().change_view(request, object_id, form_url, extra_context)

    def upload_view(self, request: AuthenticatedHttpRequest) -> HttpResponse:
        if not self.has_run_permission(request):
            raise PermissionDenied
        form = UploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["statement"]
            kept = None
            try:
                services.check_upload(upload)
                # Kept where every worker reads it (Cloud Storage in production).
                kept = storage.keep(upload, f"upload-{secrets.token_hex(8)}.csv")
                run = services.request_import(
                    source=upload.name, path=kept, actor=request.user, trigger=RunTrigger.ADMIN
                )
            except (statement.BadStatement, PermissionError) as exc:
                if kept is not None:
                    storage.forget(kept)
                form.add_error("statement", str(exc))
            else:
                self.message_user(
                    request, f"Settlement run {run.pk} queued; a worker is matching it.", messages.SUCCESS
                )
                return HttpResponseRedirect(reverse("admin:settlement_settlementrun_change", args=[run.pk]))
        return TemplateResponse(
            request,
            UPLOAD_PAGE,
            {
                **self.admin_site.each_context(request),
                "title": "Import a settlement statement",
                "form": form,
                "back_url": reverse("admin:settlement_settlementrun_changelist"),
            },
        )

    def export_view(self, request: HttpRequest, run_id: int) -> StreamingHttpResponse:
        """The run's rows, every one (matched and malformed too), as CSV."""
        if not self.has_export_permission(request):
            raise PermissionDenied
        run = get_object_or_404(SettlementRun, pk=run_id)
        return csv_response(row_table(run.results.order_by("id")), f"settlement-run-{run.pk}.csv")
