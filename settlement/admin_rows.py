"""Admin for settlement rows: the filters (run by run, per outcome, per
follow-up), each row's columns, the actions that close breaks through the
existing rails (settlement.actions), and the rows as CSV in the sealed columns
(the list as filtered, a selection, or a run's every row from its page). The
row's own page is mixed in (admin_row_page.py). Registered through
settlement.admin, which Django's autodiscovery imports."""

from collections.abc import Iterator
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest, HttpResponseBase
from django.template.response import TemplateResponse
from django.urls import URLPattern, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from backfill.runs import PERMISSION as BACKFILL_PERMISSION
from reconciliation.change_display import FORM_PAGE
from revassure import formatting
from revassure.admin_base import AuthenticatedHttpRequest, ReadOnlyAdmin, require_row_id, row_id
from revassure.exports import ListExport, safe_cell
from revassure.firestore import get_gateway
from revassure.formatting import EMPTY, points, signed, when
from revassure.refusals import REFUSALS, may
from settlement import actions, records
from settlement.admin_row_page import RowPage
from settlement.models import BREAKS, FollowUp, FollowUpKind, Outcome, RunStatus, SettlementRow, SettlementRun

# Exporting a run's rows, or the list of them, is one permission.
EXPORT_PERMISSION = "settlement.export_settlementrun"

# -- CSV -------------------------------------------------------------------------------

# The free-text cells, guarded against formulas; the other text cells hold words the
# statement's reading checked (outcome, type, currency, status).
GUARDED = frozenset(("payment_id", "reference", "user_id", "entry_id", "ledger_uid", "detail", "raw"))


def cell(name: str, value: Any) -> Any:
    """A sealed column's value in the CSV: raw (amounts exactly as Decimals,
    times in ISO form), blank for none, outside text guarded against formulas."""
    if value is None:
        return ""
    if name in GUARDED:
        return safe_cell(value)
    if name == "line":
        return value or ""
    if name == "amount":
        return f"{value.normalize():f}"
    if name == "settled_at":
        return value.isoformat()
    if name == "replayable":
        return "yes" if value else "no"
    return value


def row_table(rows: QuerySet[SettlementRow]) -> Iterator[list[Any]]:
    """The header, then one row per settlement row: the run, then the sealed
    columns in their order (settlement.records.COLUMNS)."""
    yield ["run_id", *records.COLUMNS]
    for r in rows.iterator(chunk_size=2000):
        yield [r.run_id, *(cell(name, getattr(r, name)) for name in records.COLUMNS)]


def rows_url(run_id: int, outcome: str | None = None) -> str:
    """The row list of a run (of one outcome)."""
    url = reverse("admin:settlement_settlementrow_changelist") + f"?{RunFilter.parameter_name}={run_id}"
    return url + (f"&{OutcomeFilter.parameter_name}={outcome}" if outcome else "")


# -- filters ---------------------------------------------------------------------------


class RunFilter(admin.SimpleListFilter):
    """Rows run by run: the latest completed run unless another (or all) is asked for."""

    title = "settlement run"
    parameter_name = "run"
    ALL = "all"

    def __init__(self, request, params, model, model_admin):
        latest = SettlementRun.objects.filter(status=RunStatus.COMPLETED).order_by("-id").first()
        self.default = str(latest.pk) if latest else None
        super().__init__(request, params, model, model_admin)

    def value(self) -> str | None:
        return super().value() or self.default

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        runs = list(SettlementRun.objects.filter(status=RunStatus.COMPLETED).order_by("-id")[:12])
        chosen = super().value()
        if (chosen_id := row_id(chosen)) and all(str(r.pk) != chosen for r in runs):
            runs += list(SettlementRun.objects.filter(pk=chosen_id))
        return [(self.ALL, "All runs")] + [
            (str(r.pk), f"Run {r.pk}: {when(r.finished_at or r.created_at)}, {points(r.rows)} rows")
            for r in runs
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[SettlementRow]) -> QuerySet[SettlementRow]:
        value = self.value()
        if value is None or value == self.ALL:
            return queryset
        return queryset.filter(run_id=require_row_id(value, "settlement run"))


class OutcomeFilter(admin.SimpleListFilter):
    title = "outcome"
    parameter_name = "outcome"
    BREAKS = "breaks"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(self.BREAKS, "Every break (not matched, not malformed)"), *Outcome.choices]

    def queryset(self, request: HttpRequest, queryset: QuerySet[SettlementRow]) -> QuerySet[SettlementRow]:
        value = self.value()
        if value == self.BREAKS:
            return queryset.filter(outcome__in=BREAKS)
        if value in Outcome.values:
            return queryset.filter(outcome=value)
        return queryset


class FollowUpFilter(admin.SimpleListFilter):
    title = "follow-up"
    parameter_name = "follow_up"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [
            ("none", "nothing done yet"),
            ("explained", "explained"),
            ("acted", "replay, reversal or adjustment started"),
        ]

    # Any: the rows come annotated with explained and acted (SettlementRowAdmin.get_queryset).
    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
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
class SettlementRowAdmin(ListExport, RowPage, ReadOnlyAdmin):
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
    export_permission = EXPORT_PERMISSION
    export_filename = "settlement-rows.csv"
    export_url_name = "settlement_rows_export"
    export_selection_order = ("run", "id")
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

    def get_queryset(self, request: HttpRequest) -> QuerySet[SettlementRow]:
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

    def get_ordering(self, request: HttpRequest) -> list[str]:
        return ["run", "id"]

    def get_urls(self) -> list[URLPattern]:
        return [*self.row_page_urls(), *super().get_urls()]

    def export_table(self, queryset: QuerySet[SettlementRow]) -> Iterator[list[Any]]:
        return row_table(queryset)

    @admin.display(description="line", ordering="line")
    def line_display(self, row: SettlementRow) -> int | str:
        return row.line or "not in the statement"

    @admin.display(description="outcome", ordering="outcome")
    def outcome_display(self, row: SettlementRow) -> str:
        return row.get_outcome_display()

    @admin.display(description="points", ordering="points")
    def points_display(self, row: SettlementRow) -> str:
        return points(row.points)

    @admin.display(description="amount", ordering="amount")
    def amount_display(self, row: SettlementRow) -> str:
        return formatting.money(row.amount, row.currency)

    @admin.display(description="ledger amount")
    def ledger_amount_display(self, row: SettlementRow) -> str:
        return signed(row.ledger_amount)

    @admin.display(description="replayable")
    def replayable_display(self, row: SettlementRow) -> str:
        return formatting.shown(row.replayable)

    @admin.display(description="in the ledger")
    def ledger_display(self, row: SettlementRow) -> str:
        if not row.ledger_uid:
            return EMPTY
        return f"{row.ledger_uid}: {signed(row.ledger_amount)}"

    @admin.display(description="follow-up")
    def follow_up(self, row: SettlementRow) -> str:
        parts = (["explained"] if getattr(row, "explained", False) else []) + (
            ["in hand"] if getattr(row, "acted", False) else []
        )
        return ", ".join(parts) or EMPTY

    @admin.display(description="follow-ups")
    def follow_ups_display(self, row: SettlementRow) -> str:
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

    def has_replay_permission(self, request: HttpRequest) -> bool:
        return may(request.user, BACKFILL_PERMISSION)

    def has_propose_permission(self, request: HttpRequest) -> bool:
        return may(request.user, "reconciliation.propose_balancerequest")

    def has_explain_permission(self, request: HttpRequest) -> bool:
        return may(request.user, actions.EXPLAIN_PERMISSION)

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
    def replay_missing(self, request: AuthenticatedHttpRequest, queryset: QuerySet[SettlementRow]) -> None:
        self._do(
            request,
            lambda: actions.replay_missing(queryset.select_related("delivery", "run"), actor=request.user),
            lambda m: f"Dry run migration {m.pk} queued: read its plan, then run it for real from its page.",
        )

    @admin.action(
        description="Propose a reversal backfill for the selected unreversed rows (dry run first)",
        permissions=["replay"],
    )
    def propose_reversals(self, request: AuthenticatedHttpRequest, queryset: QuerySet[SettlementRow]) -> None:
        self._do(
            request,
            lambda: actions.propose_reversals(queryset.select_related("run"), actor=request.user),
            lambda m: (
                f"Reversal backfill dry run {m.pk} queued: read its plan, then run it for real from its page."
            ),
        )

    @admin.action(description="Propose manual adjustments for the selected rows", permissions=["propose"])
    def propose_adjustments(
        self, request: AuthenticatedHttpRequest, queryset: QuerySet[SettlementRow]
    ) -> None:
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
    def explain(self, request: AuthenticatedHttpRequest, queryset: QuerySet[SettlementRow]) -> None:
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
    def export_csv(self, request: HttpRequest, queryset: QuerySet[SettlementRow]) -> HttpResponseBase:
        """ListExport's, in the words this list has always offered ("rows", not "settlement rows")."""
        return super().export_csv(request, queryset)
