"""Admin for breaks: the reviewers' list (open first, oldest and largest
first), a break's page (its sightings as a table and a chart of its delta, its
probable cause with evidence, its notes, runs and heals), bulk actions (take,
assign, acknowledge, propose heal, accept) and a CSV export of the list as
filtered. Every action calls reconciliation.break_actions; nothing here
carries a rule of its own. The list's filters and its CSV rows are
admin_break_list.py. Registered by ReconciliationConfig.ready()."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, reverse
from django.utils.html import format_html

from reconciliation import break_actions, break_age, break_causes, break_display
from reconciliation.admin_break_list import (
    AgeFilter,
    CauseFilter,
    OwnerFilter,
    SeverityFilter,
    StatusFilter,
    break_rows,
)
from reconciliation.admin_break_page import BreakPage
from reconciliation.admin_changes import HealForm
from reconciliation.break_forms import AcceptForm, AssignForm
from reconciliation.change_display import FORM_PAGE, wallet_url
from reconciliation.models import (
    Break,
    BreakAction,
    BreakSeverity,
)
from revassure.admin_base import AuthenticatedHttpRequest, ReadOnlyAdmin
from revassure.exports import ListExport
from revassure.firestore import get_gateway
from revassure.formatting import EMPTY, points, signed, when
from revassure.refusals import REFUSALS

if TYPE_CHECKING:
    from reconciliation.break_age import AgedBreak

# A column of the list: a field or method name, or a function of the break.
Column = str | Callable[[Any], str | bool]

CHANGE_FORM = "admin/reconciliation/break/change_form.html"


# -- the admin ----------------------------------------------------------------------


@admin.register(Break)
class BreakAdmin(ListExport, BreakPage, ReadOnlyAdmin):
    change_list_template = "admin/reconciliation/break/change_list.html"
    change_form_template = CHANGE_FORM
    # Decisive columns first; last_seen_display, kind_display and
    # resolution_display are low priority (hidden when narrow).
    list_display = [
        "id",
        "uid",
        "status_display",
        "severity_display",
        "age_display",
        "delta_display",
        "sightings_display",
        "owner_display",
        "cause_display",
        "last_seen_display",
        "kind_display",
        "resolution_display",
    ]
    list_display_links = ["id", "uid"]
    list_filter = [StatusFilter, AgeFilter, SeverityFilter, "kind", OwnerFilter, CauseFilter, "resolution"]
    list_select_related = ["owner"]
    search_fields = ["=uid"]
    search_help_text = "Exact wallet uid"
    list_per_page = 100
    actions = ["take", "acknowledge", "assign", "propose_heal", "accept", "export_csv"]
    export_permission = break_actions.EXPORT
    export_filename = "breaks.csv"
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "wallet_link",
                    "status_display",
                    "resolution_display",
                    "severity_display",
                    "kind_display",
                    "delta_display",
                    "wallet_points_display",
                    "ledger_sum_display",
                    "owner",
                ]
            },
        ),
        ("Age", {"fields": ["first_seen_display", "last_seen_display", "age_display", "sightings_display"]}),
        ("Probable cause", {"fields": ["cause_display", "cause_text_display", "evidence"]}),
        ("How it ended", {"fields": ["closed_display", "heal_link", "accepted_display"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Break]:
        # Annotated before the ordering, which sorts on the annotations.
        return break_age.annotate(Break.objects.all()).order_by(*self.get_ordering(request))

    def get_ordering(self, request: HttpRequest) -> list[str]:
        return ["open_rank", "first_seen", "-size"]  # open first, then oldest, then largest

    # -- columns and fields -----------------------------------------------------

    @admin.display(description="status", ordering="status")
    def status_display(self, brk: Break) -> str:
        return brk.get_status_display()

    @admin.display(description="how it ended", ordering="resolution")
    def resolution_display(self, brk: Break) -> str:
        return brk.get_resolution_display() if brk.resolution else EMPTY

    @admin.display(description="severity", ordering="severity_rank")
    def severity_display(self, brk: AgedBreak) -> str:
        return BreakSeverity(brk.severity).label

    @admin.display(description="age", ordering="first_seen")
    def age_display(self, brk: Break) -> str:
        days = break_age.age_days(brk)
        return f"{days} day{'' if days == 1 else 's'}"

    @admin.display(description="delta (wallet − ledger)", ordering="size")
    def delta_display(self, brk: Break) -> str:
        return signed(brk.delta)

    @admin.display(description="sightings", ordering="sightings_count")
    def sightings_display(self, brk: Break) -> str:
        return points(brk.sightings_count)

    @admin.display(description="owner", ordering="owner__username")
    def owner_display(self, brk: Break) -> str:
        if brk.owner_id is not None:
            return str(brk.owner)
        # Nobody's: a Take button that posts the list's own form (its CSRF token and the
        # list's filters, break_list_filters in change_list.html) to the break's take URL,
        # which comes back to the list as it was filtered. Refused there if not allowed.
        if not brk.is_open:
            return EMPTY
        url = reverse("admin:reconciliation_break_take", args=[brk.pk])
        return format_html(
            '<button type="submit" class="button take-row" formaction="{}" name="_from_list" value="1" '
            'aria-label="Take break {}">Take</button>',
            url,
            brk.pk,
        )

    @admin.display(description="kind", ordering="kind")
    def kind_display(self, brk: Break) -> str:
        return brk.get_kind_display()

    @admin.display(description="probable cause", ordering="cause")
    def cause_display(self, brk: Break) -> str:
        return brk.get_cause_display() if brk.cause else "not computed yet"

    @admin.display(description="last seen", ordering="last_seen")
    def last_seen_display(self, brk: Break) -> str:
        return when(brk.last_seen)

    @admin.display(description="first seen", ordering="first_seen")
    def first_seen_display(self, brk: Break) -> str:
        return when(brk.first_seen)

    @admin.display(description="wallet points")
    def wallet_points_display(self, brk: Break) -> str:
        return points(brk.wallet_points)

    @admin.display(description="ledger sum")
    def ledger_sum_display(self, brk: Break) -> str:
        return points(brk.ledger_sum)

    @admin.display(description="wallet")
    def wallet_link(self, brk: Break) -> str:
        return format_html('<a href="{}" id="break-wallet">{}</a>', wallet_url(brk.uid), brk.uid)

    @admin.display(description="what the ledger says")
    def cause_text_display(self, brk: Break) -> str:
        return brk.cause_text or EMPTY

    @admin.display(description="evidence")
    def evidence(self, brk: Break) -> str:
        return break_display.evidence_table(brk.cause_evidence)

    @admin.display(description="closed")
    def closed_display(self, brk: Break) -> str:
        if brk.closed_at is None:
            return EMPTY
        if brk.closed_by_run_id:
            url = reverse("admin:reconciliation_reconciliationrun_change", args=[brk.closed_by_run_id])
            return format_html(
                '{} by <a href="{}">run {}</a>', when(brk.closed_at), url, brk.closed_by_run_id
            )
        return when(brk.closed_at)

    @admin.display(description="healed by")
    def heal_link(self, brk: Break) -> str:
        if brk.heal_request_id is None:
            return EMPTY
        url = reverse("admin:reconciliation_balancerequest_change", args=[brk.heal_request_id])
        assert brk.heal_request is not None  # its id is set
        return format_html('<a href="{}" id="break-heal">{}</a>', url, brk.heal_request.title)

    @admin.display(description="accepted")
    def accepted_display(self, brk: Break) -> str:
        if brk.accepted_at is None:
            return EMPTY
        accepted = f"{signed(brk.accepted_delta)} by {brk.accepted_by} at {when(brk.accepted_at)}"
        return f"{accepted}: {brk.accepted_reason}"

    # -- permissions --------------------------------------------------------------

    def has_work_permission(self, request: HttpRequest) -> bool:
        return break_actions.may(request.user, BreakAction.TAKE)

    def has_accept_permission(self, request: HttpRequest) -> bool:
        return break_actions.may(request.user, BreakAction.ACCEPT)

    def has_propose_permission(self, request: HttpRequest) -> bool:
        return break_actions.may(request.user, BreakAction.PROPOSE_HEAL)

    # -- actions --------------------------------------------------------------------

    def _do(self, request, done: str, func, *args, **kwargs):
        try:
            result = func(*args, **kwargs)
        except REFUSALS as exc:
            self.message_user(request, f"Refused: {exc}", messages.ERROR)
            return None
        self.message_user(request, done.format(n=len(result)), messages.SUCCESS)
        return None

    @admin.action(description="Take the selected breaks (they become yours)", permissions=["work"])
    def take(self, request: AuthenticatedHttpRequest, queryset: QuerySet[Break]) -> HttpResponse | None:
        ids = list(queryset.values_list("pk", flat=True))
        return self._do(
            request, "{n} break(s) taken: they are yours.", break_actions.take, ids, actor=request.user
        )

    @admin.action(description="Acknowledge the selected breaks", permissions=["work"])
    def acknowledge(
        self, request: AuthenticatedHttpRequest, queryset: QuerySet[Break]
    ) -> HttpResponse | None:
        ids = list(queryset.values_list("pk", flat=True))
        return self._do(
            request, "{n} break(s) acknowledged.", break_actions.acknowledge, ids, actor=request.user
        )

    @admin.action(description="Assign the selected breaks to a reviewer", permissions=["work"])
    def assign(self, request: AuthenticatedHttpRequest, queryset: QuerySet[Break]) -> HttpResponse | None:
        selected = list(queryset.order_by("uid"))
        form = AssignForm(request.POST if "assign" in request.POST else None)
        if "assign" in request.POST and form.is_valid():
            owner = form.cleaned_data["owner"]
            return self._do(
                request,
                f"{{n}} break(s) assigned to {owner}.",
                break_actions.assign,
                [b.pk for b in selected],
                owner=owner,
                actor=request.user,
            )
        return self._action_page(request, f"Assign {len(selected)} break(s)", "assign", selected, form)

    @admin.action(description="Propose heals for the selected breaks", permissions=["propose"])
    def propose_heal(
        self, request: AuthenticatedHttpRequest, queryset: QuerySet[Break]
    ) -> HttpResponse | None:
        """What cannot be healed now (malformed, closed, a heal open, the freeze) is said
        before the form, by break_actions.refusal, and left out."""
        selected = list(queryset.order_by("uid"))
        refusals = {b.pk: break_actions.refusal(b, request.user, BreakAction.PROPOSE_HEAL) for b in selected}
        healable = [b for b in selected if not refusals[b.pk]]
        left_out = [b for b in selected if refusals[b.pk]]
        form = HealForm(request.POST if "propose" in request.POST else None)
        if "propose" in request.POST and healable and form.is_valid():
            return self._do(
                request,
                "{n} heal request(s) proposed; another person approves them.",
                break_actions.propose_heal,
                [b.pk for b in healable],
                actor=request.user,
                gateway=get_gateway(),
                **form.cleaned_data,
            )
        if not left_out:
            notice = ""
        elif healable:
            notice = f"{len(left_out)} of the {len(selected)} selected breaks are left out (said below)."
        else:
            notice = f"None of the {len(selected)} selected breaks can be healed now (said below)."
        return self._action_page(
            request,
            f"Propose heals for {len(healable)} break(s)",
            "propose_heal",
            healable,
            form,
            button=("propose", "Propose heals"),
            notice=notice,
            left_out=[(b.uid, refusals[b.pk]) for b in left_out],
        )

    @admin.action(
        description="Accept the difference of the selected breaks (write-off)", permissions=["accept"]
    )
    def accept(self, request: AuthenticatedHttpRequest, queryset: QuerySet[Break]) -> HttpResponse | None:
        selected = list(queryset.order_by("uid"))
        form = AcceptForm(request.POST if "accept" in request.POST else None)
        if "accept" in request.POST and form.is_valid():
            return self._do(
                request,
                "{n} break(s) accepted and closed.",
                break_actions.accept,
                [b.pk for b in selected],
                actor=request.user,
                reason=form.cleaned_data["reason"],
            )
        return self._action_page(
            request, f"Accept the difference of {len(selected)} break(s)", "accept", selected, form
        )

    def _action_page(self, request, title, action, selected, form, *, button=None, notice="", left_out=()):
        name, text = button or (action, title.split(" ", 1)[0])
        return TemplateResponse(
            request,
            FORM_PAGE,
            {
                **self.admin_site.each_context(request),
                "title": title,
                "back_url": self._preserved(request, reverse("admin:reconciliation_break_changelist")),
                "back_label": "Breaks",
                "notice": notice,
                "notice_id": "break-action-refused",
                "facts": [
                    (
                        b.uid,
                        f"delta {signed(b.delta)}, {b.get_status_display().lower()}, "
                        f"since {when(b.first_seen)}",
                    )
                    for b in selected
                ]
                + list(left_out),
                "form": form,
                "form_id": f"break-{action}-form",
                "hidden": [("action", action), *(("_selected_action", b.pk) for b in selected)],
                "buttons": [(name, text, f"break-{action}")] if form is not None and selected else [],
            },
        )

    # -- pages ------------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        return [*self.break_page_urls(), *super().get_urls()]

    def export_table(self, queryset: QuerySet[Break]) -> Iterator[list[Any]]:
        return break_rows(queryset)

    def get_list_display(self, request: HttpRequest) -> list[Column] | tuple[Column, ...]:
        # The owner column offers Take on nobody's breaks to those who take breaks.
        if break_actions.may(request.user, BreakAction.TAKE):
            return self.list_display
        return [name if name != "owner_display" else "owner" for name in self.list_display]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra_context = {**(extra_context or {}), "cause_shares": break_causes.shares()}
        return super().changelist_view(request, extra_context)
