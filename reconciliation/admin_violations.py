"""Admin for the violations of reconciliation runs: listed run by run (the latest
completed run unless another is chosen), each with its heal, filtered by heal,
sign and size, healed from the list, exported as CSV."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TypedDict

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Abs
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from reconciliation import change_queries
from reconciliation.admin_changes import propose_heal_action
from reconciliation.change_display import frozen_text, wallet_url
from reconciliation.models import (
    OPEN_STATES,
    BalanceRequest,
    ReconciliationRun,
    RequestKind,
    RequestState,
    RunStatus,
    Violation,
)
from reconciliation.reports import describe_details
from revassure import freeze
from revassure.admin_base import AuthenticatedHttpRequest, ReadOnlyAdmin, require_row_id, row_id
from revassure.exports import ListExport, safe_cell
from revassure.formatting import EMPTY, points, signed, when
from revassure.refusals import may

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations

# Exporting a run's violations, or the list of them, is one permission.
EXPORT_PERMISSION = "reconciliation.export_reconciliationrun"

# -- CSV -----------------------------------------------------------------------


VIOLATION_HEADER = [
    "run_id",
    "uid",
    "kind",
    "wallet_points",
    "ledger_sum",
    "delta",
    "entries",
    "details",
    "heal_request_id",
    "heal_state",
]


def violation_rows(violations: QuerySet[HealedViolation]) -> Iterator[list[Any]]:
    """A clean table a spreadsheet can pivot: the header, then one row per violation
    (raw values; text cells guarded against formulas)."""
    yield VIOLATION_HEADER
    for v in violations.iterator(chunk_size=2000):
        yield [
            v.run_id,
            safe_cell(v.uid),
            v.kind,
            v.wallet_points,
            v.ledger_sum,
            v.delta,
            v.entries,
            safe_cell(describe_details(v.details)),
            v.heal_id or "",
            v.heal_state or "",
        ]


# -- violations ----------------------------------------------------------------


class LatestHeal(TypedDict):
    """What with_heals adds to each violation: its latest heal or correction request's
    id, state and kind, all None when it has none."""

    heal_id: int | None
    heal_state: str | None
    heal_kind: str | None


if TYPE_CHECKING:
    HealedViolation = WithAnnotations[Violation, LatestHeal]


def with_heals(violations: QuerySet[Violation]) -> QuerySet[HealedViolation]:
    """Each violation with its latest heal (or correction) request's id, state and kind (or None)."""
    latest = BalanceRequest.objects.filter(violation=OuterRef("pk")).order_by("-created_at", "-id")
    return violations.annotate(
        heal_id=Subquery(latest.values("pk")[:1]),
        heal_state=Subquery(latest.values("state")[:1]),
        heal_kind=Subquery(latest.values("kind")[:1]),
    )


class RunFilter(admin.SimpleListFilter):
    """Violations run by run: the latest completed run unless another (or all)
    is asked for. The parameter is the one the run pages have always linked with."""

    title = "run"
    parameter_name = "run__id__exact"
    ALL = "all"
    SHOWN = 12

    def __init__(self, request, params, model, model_admin):
        latest = ReconciliationRun.objects.filter(status=RunStatus.COMPLETED).order_by("-id").first()
        self.default = str(latest.pk) if latest else None
        super().__init__(request, params, model, model_admin)

    def value(self) -> str | None:
        return super().value() or self.default

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        runs = list(
            ReconciliationRun.objects.filter(status__in=[RunStatus.COMPLETED]).order_by("-id")[: self.SHOWN]
        )
        chosen = super().value()
        chosen_id = row_id(chosen)
        if chosen_id and all(str(run.pk) != chosen for run in runs):
            runs += list(ReconciliationRun.objects.filter(pk=chosen_id))
        return [(str(run.pk), self.describe(run)) for run in runs]

    def describe(self, run: ReconciliationRun) -> str:
        latest = " (latest)" if str(run.pk) == self.default else ""
        return (
            f"Run {run.pk}{latest}: {when(run.finished_at or run.created_at)}, {points(run.violations_count)}"
        )

    def queryset(self, request: HttpRequest, queryset: QuerySet[Violation]) -> QuerySet[Violation]:
        value = self.value()
        if value is None or value == self.ALL:
            return queryset
        return queryset.filter(run_id=require_row_id(value, "run"))

    # django-stubs gives the choices a TypedDict of its own, private to its stubs.
    def choices(self, changelist: ChangeList) -> Iterator[dict[str, Any]]:  # type: ignore[override]
        yield {
            "selected": self.value() == self.ALL,
            "query_string": changelist.get_query_string({self.parameter_name: self.ALL}),
            "display": "All runs",
        }
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }


class HealFilter(admin.SimpleListFilter):
    title = "heal"
    parameter_name = "heal"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [
            ("none", "no heal proposed"),
            ("pending", "heal pending"),
            ("applied", "healed"),
            ("closed", "heal rejected, stale, failed or expired"),
        ]

    # Any: it filters on with_heals' columns, whose `__in` lookups django-stubs checks
    # as if they took one value.
    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value == "none":
            return queryset.filter(heal_id__isnull=True)
        if value == "pending":
            return queryset.filter(heal_state__in=OPEN_STATES)
        if value == "applied":
            return queryset.filter(heal_state=RequestState.APPLIED)
        if value == "closed":
            return queryset.filter(heal_id__isnull=False).exclude(
                heal_state__in=[*OPEN_STATES, RequestState.APPLIED]
            )
        return queryset


class SignFilter(admin.SimpleListFilter):
    title = "sign"
    parameter_name = "sign"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("over", "wallet above ledger"), ("under", "wallet below ledger")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Violation]) -> QuerySet[Violation]:
        if self.value() == "over":
            return queryset.filter(delta__gt=0)
        if self.value() == "under":
            return queryset.filter(delta__lt=0)
        return queryset


class SizeFilter(admin.SimpleListFilter):
    title = "size of drift"
    parameter_name = "size"
    BUCKETS = {"small": (1, 10), "medium": (11, 100), "large": (101, 1000), "huge": (1001, None)}

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("small", "1-10"), ("medium", "11-100"), ("large", "101-1,000"), ("huge", "over 1,000")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Violation]) -> QuerySet[Violation]:
        value = self.value()
        bucket = self.BUCKETS.get(value) if value is not None else None
        if bucket is None:
            return queryset
        low, high = bucket
        over = Q(delta__gte=low) if high is None else Q(delta__gte=low, delta__lte=high)
        under = Q(delta__lte=-low) if high is None else Q(delta__lte=-low, delta__gte=-high)
        return queryset.filter(over | under)


@admin.register(Violation)
class ViolationAdmin(ListExport, ReadOnlyAdmin):
    change_list_template = "admin/reconciliation/violation/change_list.html"
    change_form_template = "admin/reconciliation/violation/change_form.html"
    # Decisive columns first; run_link, wallet_points_display,
    # ledger_sum_display and entries are low priority (hidden when narrow).
    list_display = [
        "uid",
        "kind_display",
        "delta_display",
        "heal",
        "break_link",
        "problem",
        "run_link",
        "wallet_points_display",
        "ledger_sum_display",
        "entries_display",
    ]
    list_filter = [RunFilter, "kind", HealFilter, SignFilter, SizeFilter]
    list_select_related = ["run", "sighting"]
    search_fields = ["=uid"]
    search_help_text = "Exact wallet uid"
    list_per_page = 100
    actions = ["propose_heal", "export_csv"]
    export_permission = EXPORT_PERMISSION
    export_filename = "violations.csv"
    export_selection_order = ("run_id", "uid")
    fields = [
        "run_link",
        "wallet_link",
        "kind_display",
        "wallet_points_display",
        "ledger_sum_display",
        "delta_display",
        "entries_display",
        "at_read_time_display",
        "problem",
        "heal_requests",
        "heal_status",
        "break_link",
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[HealedViolation]:
        # size: the delta whatever its sign, so the delta column sorts largest first.
        return with_heals(super().get_queryset(request)).annotate(size=Abs("delta"))

    @admin.action(description="Propose heal for the selected violations", permissions=["propose"])
    def propose_heal(
        self, request: AuthenticatedHttpRequest, queryset: QuerySet[Violation]
    ) -> HttpResponse | None:
        return propose_heal_action(self, request, queryset)

    def has_propose_permission(self, request: HttpRequest) -> bool:
        return may(request.user, "reconciliation.propose_balancerequest")

    def export_table(self, queryset: QuerySet[HealedViolation]) -> Iterator[list[Any]]:
        return violation_rows(queryset)

    @admin.display(description="kind", ordering="kind")
    def kind_display(self, violation: Violation) -> str:
        return violation.get_kind_display()

    @admin.display(description="delta (wallet − ledger)", ordering="size")
    def delta_display(self, violation: Violation) -> str:
        return signed(violation.delta)

    @admin.display(description="at the run's read time")
    def at_read_time_display(self, violation: Violation) -> str:
        first = violation.at_read_time
        if first is None:
            return EMPTY
        at_t0 = (
            f"delta {signed(first['delta'])} (points {first['wallet_points']}, ledger {first['ledger_sum']})"
        )
        return f"{at_t0}; still held at the live re-check, as above"

    @admin.display(description="wallet points", ordering="wallet_points")
    def wallet_points_display(self, violation: Violation) -> str:
        return points(violation.wallet_points)

    @admin.display(description="ledger sum", ordering="ledger_sum")
    def ledger_sum_display(self, violation: Violation) -> str:
        return points(violation.ledger_sum)

    @admin.display(description="entries", ordering="entries")
    def entries_display(self, violation: Violation) -> str:
        return points(violation.entries)

    @admin.display(description="problem")
    def problem(self, violation: Violation) -> str:
        return describe_details(violation.details) or EMPTY

    @admin.display(description="heal", ordering="heal_state")
    def heal(self, violation: HealedViolation) -> str:
        if violation.heal_id is None:
            return EMPTY
        url = reverse("admin:reconciliation_balancerequest_change", args=[violation.heal_id])
        assert violation.heal_state is not None and violation.heal_kind is not None  # that request's
        state = RequestState(violation.heal_state).label.lower()
        kind = RequestKind(violation.heal_kind).label.capitalize()
        return format_html('<a href="{}">{} #{} {}</a>', url, kind, violation.heal_id, state)

    @admin.display(description="break")
    def break_link(self, violation: Violation) -> str:
        sighting = getattr(violation, "sighting", None)  # none while breaks are not tracked
        if sighting is None:
            return EMPTY
        url = reverse("admin:reconciliation_break_change", args=[sighting.brk_id])
        return format_html('<a href="{}" class="break-link">Break {}</a>', url, sighting.brk_id)

    @admin.display(description="run", ordering="run")
    def run_link(self, violation: Violation) -> str:
        url = reverse("admin:reconciliation_reconciliationrun_change", args=[violation.run_id])
        return format_html('<a href="{}">Run {}</a>', url, violation.run_id)

    @admin.display(description="wallet")
    def wallet_link(self, violation: Violation) -> str:
        return format_html(
            '<a href="{}" id="violation-wallet">{}</a>', wallet_url(violation.uid), violation.uid
        )

    @admin.display(description="heal requests")
    def heal_requests(self, violation: Violation) -> str:
        requests = violation.heal_requests.order_by("-created_at", "-id")
        if not requests:
            return EMPTY
        return format_html_join(
            mark_safe("<br>"),
            '<a href="{}" class="heal-request">{} {}</a>, {} ({})',
            (
                (
                    reverse("admin:reconciliation_balancerequest_change", args=[r.pk]),
                    r.title,
                    r.get_state_display().lower(),
                    r.get_strategy_display() or f"supersedes entry {r.supersedes}",
                    when(r.created_at),
                )
                for r in requests
            ),
        )

    @admin.display(description="heal now")
    def heal_status(self, violation: Violation) -> str:
        refusal = self._heal_refusal(violation)
        return refusal[:1].upper() + refusal[1:] if refusal else "Yes: propose a heal from this page."

    def _heal_refusal(self, violation) -> str:
        event = freeze.current()
        if event is not None:
            return frozen_text(event)
        return change_queries.heal_refusal(
            violation, change_queries.blocking_heals([violation]).get(violation.pk)
        )

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        violation = self.get_object(request, object_id)
        can_heal = (
            violation is not None
            and self.has_propose_permission(request)
            and not self._heal_refusal(violation)
        )
        extra_context = {
            **(extra_context or {}),
            "can_heal": can_heal,
            "heal_action_url": reverse("admin:reconciliation_violation_changelist")
            + f"?{RunFilter.parameter_name}={RunFilter.ALL}",
            "wallet_url": wallet_url(violation.uid) if violation is not None else None,
        }
        return super().change_view(request, object_id, form_url, extra_context)
