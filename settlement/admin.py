"""Admin for settlement runs (the sealed reports) and their rows: the money at
stake per outcome at the top of a run, rows filtered per outcome, CSV export,
an upload that a worker processes with progress, and the actions that close
breaks through the existing rails (settlement.actions). Pages call services;
none carries rules of its own."""

import secrets

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Exists, OuterRef, Sum
from django.db.models.functions import Abs
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from backfill.runs import PERMISSION as BACKFILL_PERMISSION
from reconciliation.admin_changes import FORM_PAGE
from revassure import formatting
from revassure.admin_base import ReadOnlyAdmin, require_row_id, row_id
from revassure.exports import csv_response, safe_cell
from revassure.firestore import get_gateway
from revassure.formatting import EMPTY, points, signed, size, when
from revassure.refusals import REFUSALS
from settlement import actions, records, reports, services, statement, storage
from settlement.admin_row_page import RowPage
from settlement.models import (
    BREAKS,
    FollowUp,
    FollowUpKind,
    Outcome,
    RunStatus,
    RunTrigger,
    SettlementRow,
    SettlementRun,
)

EXPORT_PERMISSION = "settlement.export_settlementrun"
RUN_PERMISSION = "settlement.run_settlement"
UPLOAD_PAGE = "admin/settlement/upload.html"


def money(pairs) -> str:
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


# -- runs ------------------------------------------------------------------------------


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

    def get_queryset(self, request):
        # A dry run's scratch is nobody's report: it is gone when the dry run ends.
        return super().get_queryset(request).exclude(status=RunStatus.DRY_RUN)

    @admin.display(description="started", ordering="started_at")
    def started(self, run):
        return when(run.started_at)

    @admin.display(description="finished", ordering="finished_at")
    def finished(self, run):
        return when(run.finished_at)

    @admin.display(description="matched by")
    def matched_by(self, run):
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
    def malformed_display(self, run):
        return points(run.malformed_rows)

    @admin.display(description="file size")
    def file_size(self, run):
        return size(run.file_bytes)

    @admin.display(description="rows", ordering="rows")
    def rows_display(self, run):
        return points(run.rows)

    @admin.display(description="breaks")
    def breaks_link(self, run):
        count = sum(getattr(run, name) for name in BREAKS)
        return format_html('<a href="{}">{}</a>', rows_url(run.pk), points(count))

    @admin.display(description="same file as")
    def repeat(self, run):
        if run.repeat_of_id is None:
            return EMPTY
        url = reverse("admin:settlement_settlementrun_change", args=[run.repeat_of_id])
        return format_html('<a href="{}">run {}</a>', url, run.repeat_of_id)

    @admin.display(description="progress")
    def progress(self, run):
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

    def has_run_permission(self, request):
        return request.user.has_perm(RUN_PERMISSION)

    def has_export_permission(self, request):
        return request.user.has_perm(EXPORT_PERMISSION)

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("upload/", wrap(self.upload_view), name="settlement_upload"),
            path("<int:run_id>/export.csv", wrap(self.export_view), name="settlement_run_export"),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        live = SettlementRun.objects.filter(status__in=[RunStatus.PENDING, RunStatus.RUNNING]).exists()
        extra_context = {
            **(extra_context or {}),
            "can_upload": self.has_run_permission(request),
            "refresh_seconds": 5 if live else None,
        }
        return super().changelist_view(request, extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
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

    def upload_view(self, request):
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

    def export_view(self, request, run_id):
        """The run's rows, every one (matched and malformed too), as CSV."""
        if not self.has_export_permission(request):
            raise PermissionDenied
        run = get_object_or_404(SettlementRun, pk=run_id)
        return csv_response(row_table(run.results.order_by("id")), f"settlement-run-{run.pk}.csv")


def rows_url(run_id: int, outcome: str | None = None) -> str:
    url = reverse("admin:settlement_settlementrow_changelist") + f"?{RunFilter.parameter_name}={run_id}"
    return url + (f"&{OutcomeFilter.parameter_name}={outcome}" if outcome else "")


# -- rows ------------------------------------------------------------------------------


class RunFilter(admin.SimpleListFilter):
    """Rows run by run: the latest completed run unless another (or all) is asked for."""

    title = "settlement run"
    parameter_name = "run"
    ALL = "all"

    def __init__(self, request, params, model, model_admin):
        latest = SettlementRun.objects.filter(status=RunStatus.COMPLETED).order_by("-id").first()
        self.default = str(latest.pk) if latest else None
        super().__init__(request, params, model, model_admin)

    def value(self):
        return super().value() or self.default

    def lookups(self, request, model_admin):
        runs = list(SettlementRun.objects.filter(status=RunStatus.COMPLETED).order_by("-id")[:12])
        chosen = super().value()
        if row_id(chosen) and all(str(r.pk) != chosen for r in runs):
            runs += list(SettlementRun.objects.filter(pk=row_id(chosen)))
        return [(self.ALL, "All runs")] + [
            (str(r.pk), f"Run {r.pk}: {when(r.finished_at or r.created_at)}, {points(r.rows)} rows")
            for r in runs
        ]

    def queryset(self, request, queryset):
        value = self.value()
        if value is None or value == self.ALL:
            return queryset
        return queryset.filter(run_id=require_row_id(value, "settlement run"))


class OutcomeFilter(admin.SimpleListFilter):
    title = "outcome"
    parameter_name = "outcome"
    BREAKS = "breaks"

    def lookups(self, request, model_admin):
        return [(self.BREAKS, "Every break (not matched, not malformed)"), *Outcome.choices]

    def queryset(self, request, queryset):
        value = self.value()
        if value == self.BREAKS:
            return queryset.filter(outcome__in=BREAKS)
        if value in Outcome.values:
            return queryset.filter(outcome=value)
        return queryset


class FollowUpFilter(admin.SimpleListFilter):
    title = "follow-up"
    parameter_name = "follow_up"

    def lookups(self, request, model_admin):
        return [
            ("none", "nothing done yet"),
            ("explained", "explained"),
            ("acted", "replay, reversal or adjustment started"),
        ]

    def queryset(self, request, queryset):
        value = self.value()
        if value == "none":
            return queryset.filter(explained=False, acted=False)
        if value == "explained":
            return queryset.filter(explained=True)
        if value == "acted":
            return queryset.filter(acted=True)
        return queryset


class ReasonForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 60}))


@admin.register(SettlementRow)
class SettlementRowAdmin(RowPage, ReadOnlyAdmin):
    change_form_template = "admin/settlement/settlementrow/change_form.html"
    list_display = [
        "line_display",
        "outcome_display",
        "type",
        "payment_id",
        "reference",
        "user_id",
        "points_display",
        "amount_display",
        "status",
        "ledger_display",
        "follow_up",
        "detail",
    ]
    list_filter = [RunFilter, OutcomeFilter, FollowUpFilter, "type", "status", "replayable"]
    list_select_related = ["run"]
    search_fields = ["payment_id", "reference", "user_id", "entry_id"]
    actions = ["replay_missing", "propose_reversals", "propose_adjustments", "explain", "export_csv"]
    fields = [
        "run",
        "line",
        "outcome_display",
        "detail",
        "type",
        "payment_id",
        "reference",
        "user_id",
        "points_display",
        "amount_display",
        "status",
        "settled_at",
        "entry_id",
        "ledger_uid",
        "ledger_amount_display",
        "delivery",
        "replayable_display",
        "raw",
        "follow_ups_display",
    ]

    def get_queryset(self, request):
        done = FollowUp.objects.filter(row=OuterRef("pk"))
        return (
            super()
            .get_queryset(request)
            .exclude(run__status=RunStatus.DRY_RUN)
            .annotate(
                explained=Exists(done.filter(kind=FollowUpKind.EXPLAINED)),
                acted=Exists(done.exclude(kind=FollowUpKind.EXPLAINED)),
            )
        )

    def get_ordering(self, request):
        return ["run", "id"]

    @admin.display(description="line", ordering="line")
    def line_display(self, row):
        return row.line or "not in the statement"

    @admin.display(description="outcome", ordering="outcome")
    def outcome_display(self, row):
        return row.get_outcome_display()

    @admin.display(description="points", ordering="points")
    def points_display(self, row):
        return points(row.points)

    @admin.display(description="amount", ordering="amount")
    def amount_display(self, row):
        return formatting.money(row.amount, row.currency)

    @admin.display(description="ledger amount")
    def ledger_amount_display(self, row):
        return signed(row.ledger_amount)

    @admin.display(description="replayable")
    def replayable_display(self, row):
        return formatting.shown(row.replayable)

    @admin.display(description="in the ledger")
    def ledger_display(self, row):
        if not row.ledger_uid:
            return EMPTY
        return f"{row.ledger_uid}: {signed(row.ledger_amount)}"

    @admin.display(description="follow-up")
    def follow_up(self, row):
        parts = (["explained"] if getattr(row, "explained", False) else []) + (
            ["in hand"] if getattr(row, "acted", False) else []
        )
        return ", ".join(parts) or EMPTY

    @admin.display(description="follow-ups")
    def follow_ups_display(self, row):
        items = []
        for f in row.follow_ups.select_related("actor"):
            target = ""
            if f.migration_id:
                url = reverse("admin:backfill_datamigration_change", args=[f.migration_id])
                target = format_html(' → <a href="{}">migration {}</a>', url, f.migration_id)
            elif f.request_id:
                url = reverse("admin:reconciliation_balancerequest_change", args=[f.request_id])
                target = format_html(' → <a href="{}">request {}</a>', url, f.request_id)
            items.append((when(f.created_at), f.actor, f.get_kind_display(), target, f.reason))
        if not items:
            return EMPTY
        lines = format_html_join(mark_safe("<br>"), "{} {}: {}{} {}", items)  # a constant: nothing to escape
        return format_html('<span id="row-follow-ups">{}</span>', lines)

    def has_replay_permission(self, request):
        return request.user.has_perm(BACKFILL_PERMISSION)

    def has_propose_permission(self, request):
        return request.user.has_perm("reconciliation.propose_balancerequest")

    def has_explain_permission(self, request):
        return request.user.has_perm(actions.EXPLAIN_PERMISSION)

    def has_export_permission(self, request):
        return request.user.has_perm(EXPORT_PERMISSION)

    def _do(self, request, func, done):
        try:
            result = func()
        except REFUSALS as exc:
            self.message_user(request, f"Refused: {exc}", messages.ERROR)
            return None
        self.message_user(request, done(result), messages.SUCCESS)
        return result

    @admin.action(
        description="Replay the stored deliveries of the selected missing rows (dry run first)",
        permissions=["replay"],
    )
    def replay_missing(self, request, queryset):
        self._do(
            request,
            lambda: actions.replay_missing(queryset.select_related("delivery", "run"), actor=request.user),
            lambda m: f"Dry run migration {m.pk} queued: read its plan, then run it for real from its page.",
        )

    @admin.action(
        description="Propose a reversal backfill for the selected unreversed rows (dry run first)",
        permissions=["replay"],
    )
    def propose_reversals(self, request, queryset):
        self._do(
            request,
            lambda: actions.propose_reversals(queryset.select_related("run"), actor=request.user),
            lambda m: (
                f"Reversal backfill dry run {m.pk} queued: read its plan, then run it for real from its page."
            ),
        )

    @admin.action(description="Propose manual adjustments for the selected rows", permissions=["propose"])
    def propose_adjustments(self, request, queryset):
        return self._with_reason(
            request,
            queryset,
            "propose_adjustments",
            "Propose manual adjustments (reason code: settlement)",
            lambda rows, reason: actions.propose_adjustments(
                rows, actor=request.user, reason=reason, gateway=get_gateway()
            ),
            lambda made: f"{len(made)} manual adjustment(s) proposed; a second person approves each.",
        )

    @admin.action(description="Mark the selected rows explained", permissions=["explain"])
    def explain(self, request, queryset):
        return self._with_reason(
            request,
            queryset,
            "explain",
            "Mark rows explained",
            lambda rows, reason: actions.explain(rows, actor=request.user, reason=reason),
            lambda n: f"{n} row(s) marked explained.",
        )

    def _with_reason(self, request, queryset, action, title, func, done):
        rows = list(queryset.select_related("run"))
        form = ReasonForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            if self._do(request, lambda: func(rows, form.cleaned_data["reason"]), done) is not None:
                return None
        facts = []
        refusals = actions.adjustment_refusals(rows) if action == "propose_adjustments" else {}
        for row in rows:
            extra = ""
            if row.pk in refusals:
                extra = f"; refused: {refusals[row.pk]}"
            elif action == "propose_adjustments":
                try:
                    uid, amount = actions.adjustment_of(row)
                    extra = f"; adjust wallet {uid} by {signed(amount)}"
                except actions.ActionRefused as exc:
                    extra = f"; {exc}"
            facts.append(
                (
                    f"line {row.line}" if row.line else f"row {row.pk}",
                    f"{row.get_outcome_display()}: {row.detail}{extra}",
                )
            )
        return TemplateResponse(
            request,
            FORM_PAGE,
            {
                **self.admin_site.each_context(request),
                "title": title,
                "back_url": reverse("admin:settlement_settlementrow_changelist"),
                "back_label": "Settlement rows",
                "facts": facts,
                "form": form,
                "form_id": f"settlement-{action}-form",
                "hidden": [("action", action), *(("_selected_action", r.pk) for r in rows)],
                "buttons": [("apply", title.split(" (")[0], f"settlement-{action}")],
            },
        )

    @admin.action(description="Export the selected rows as CSV", permissions=["export"])
    def export_csv(self, request, queryset):
        return csv_response(row_table(queryset.order_by("run", "id")), "settlement-rows.csv")

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("export.csv", wrap(self.export_view), name="settlement_rows_export"),
            *self.row_page_urls(),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        query = request.GET.copy()
        query.pop("e", None)
        extra_context = {
            **(extra_context or {}),
            "export_url": reverse("admin:settlement_rows_export")
            + (f"?{query.urlencode()}" if query else ""),
            "can_export": self.has_export_permission(request),
        }
        return super().changelist_view(request, extra_context)

    def export_view(self, request):
        """The row list as filtered on the page (same query string), as CSV."""
        if not self.has_export_permission(request):
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            return HttpResponseRedirect(reverse("admin:settlement_settlementrow_changelist") + "?e=1")
        return csv_response(row_table(changelist.queryset), "settlement-rows.csv")


# -- CSV -------------------------------------------------------------------------------

ROW_HEADER = ["run_id", *records.COLUMNS]  # the sealed columns, in their order


def row_table(rows):
    """The header, then one row per settlement row: raw values (amounts exactly
    as Decimals), text cells guarded against formulas."""
    yield ROW_HEADER
    for r in rows.iterator(chunk_size=2000):
        yield [
            r.run_id,
            r.line or "",
            r.outcome,
            r.type,
            safe_cell(r.payment_id),
            safe_cell(r.reference),
            safe_cell(r.user_id),
            "" if r.points is None else r.points,
            "" if r.amount is None else f"{r.amount.normalize():f}",
            r.currency,
            r.status,
            r.settled_at.isoformat() if r.settled_at else "",
            safe_cell(r.entry_id),
            safe_cell(r.ledger_uid),
            "" if r.ledger_amount is None else r.ledger_amount,
            r.delivery_id or "",
            "yes" if r.replayable else "no",
            safe_cell(r.detail),
            safe_cell(r.raw),
        ]
