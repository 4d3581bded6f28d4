"""Admin for heals, corrections and manual adjustments: the approvers' queue,
each request's page and history, the trail of every request, and proposing
heals from the violations (their admin's action). Deciding a request and
proposing an adjustment are pages of their own (admin_change_pages.py).
Every page calls reconciliation.changes; none carries rules of its own. Pages
offer only what the services would accept (change_queries.why_undecidable, the
freeze) and say why otherwise; the services still refuse on their own."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypedDict, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.models import User
from django.db.models import Count, Exists, F, OuterRef, QuerySet, Value
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.timesince import timesince

from reconciliation import change_queries, changes
from reconciliation.admin_change_pages import ChangePages
from reconciliation.change_display import FORM_PAGE, frozen_text, state_label, trail, wallet_url
from reconciliation.models import (
    BalanceRequest,
    HealStrategy,
    RequestEvent,
    RequestState,
    Violation,
    ViolationKind,
)
from revassure import freeze
from revassure.admin_base import AuthenticatedHttpRequest, ReadOnlyAdmin
from revassure.firestore import get_gateway
from revassure.formatting import EMPTY, label, points, shown, signed, when
from revassure.refusals import REFUSALS, may

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations


class Queue(TypedDict):
    """What the requests list adds to each request (BalanceRequestAdmin.get_queryset)."""

    approvals_count: int
    decidable: bool


if TYPE_CHECKING:
    QueuedRequest = WithAnnotations[BalanceRequest, Queue]


class AwaitingMeFilter(admin.SimpleListFilter):
    title = "queue"
    parameter_name = "queue"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("mine", "awaiting my decision")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[BalanceRequest]) -> QuerySet[BalanceRequest]:
        if self.value() == "mine":
            return queryset.filter(pk__in=change_queries.awaiting(request.user).values("pk"))
        return queryset


@admin.register(BalanceRequest)
class BalanceRequestAdmin(ChangePages, ReadOnlyAdmin):
    change_list_template = "admin/reconciliation/balancerequest/change_list.html"
    change_form_template = "admin/reconciliation/balancerequest/change_form.html"
    # Decisive columns first; proposed_by, strategy_display and drift are low
    # priority (the stylesheet may hide them on narrow screens).
    list_display = [
        "id",
        "kind_display",
        "uid",
        "amount_display",
        "state_display",
        "decide_link",
        "approvals_display",
        "age",
        "proposed_by",
        "strategy_display",
        "drift",
    ]
    list_display_links = ["id"]
    list_filter = [AwaitingMeFilter, "state", "kind", "strategy"]
    list_select_related = ["proposed_by"]
    search_fields = ["=uid"]
    search_help_text = "Exact wallet uid"
    fields = [
        "kind_display",
        "uid_link",
        "state_display",
        "strategy_display",
        "supersedes_display",
        "amount_display",
        "reason_display",
        "violation_link",
        "expected_points_display",
        "expected_ledger_sum_display",
        "approvals_display",
        "proposed_by",
        "correlation_id",
        "created",
        "expires",
        "approved",
        "applied",
        "result_display",
        "history",
    ]
    readonly_fields = cast(list[str], fields)  # the names above, none grouped

    def get_queryset(self, request: HttpRequest) -> QuerySet[QueuedRequest]:
        queryset = super().get_queryset(request).annotate(approvals_count=Count("approvals", distinct=True))
        if may(request.user, "reconciliation.approve_balancerequest"):
            mine = change_queries.awaiting(request.user).filter(pk=OuterRef("pk"))
            return queryset.annotate(decidable=Exists(mine))
        return queryset.annotate(decidable=Value(False))

    @admin.display(description="kind", ordering="kind")
    def kind_display(self, obj: BalanceRequest) -> str:
        return obj.get_kind_display().capitalize()

    @admin.display(description="state", ordering="state")
    def state_display(self, obj: BalanceRequest) -> str:
        return obj.get_state_display()

    @admin.display(description="strategy", ordering="strategy")
    def strategy_display(self, obj: BalanceRequest) -> str:
        return obj.get_strategy_display() if obj.strategy else EMPTY

    @admin.display(description="supersedes entry")
    def supersedes_display(self, obj: BalanceRequest) -> str:
        return obj.supersedes or EMPTY

    @admin.display(description="amount", ordering="amount")
    def amount_display(self, obj: BalanceRequest) -> str:
        return signed(obj.amount)

    @admin.display(
        description="drift (wallet − ledger)", ordering=F("expected_points") - F("expected_ledger_sum")
    )
    def drift(self, obj: BalanceRequest) -> str:
        return signed(obj.expected_points - obj.expected_ledger_sum)

    @admin.display(description="age", ordering="created_at")
    def age(self, obj: BalanceRequest) -> str:
        return timesince(obj.created_at, timezone.now())

    @admin.display(description="approvals")
    def approvals_display(self, obj: BalanceRequest) -> str:
        count = obj.approvals_count if hasattr(obj, "approvals_count") else obj.approvals.count()
        return f"{count}/{obj.required_approvals}"

    @admin.display(description="decide")
    def decide_link(self, obj: QueuedRequest) -> str:
        # Only where the decide page would let this person decide (never a
        # link that ends in a refusal): approvers, not their own, still open.
        if not obj.decidable:
            return ""
        url = reverse("admin:reconciliation_balancerequest_decide", args=[obj.pk])
        return format_html('<a class="button decide-link" href="{}">Decide</a>', url)

    @admin.display(description="wallet")
    def uid_link(self, obj: BalanceRequest) -> str:
        return format_html('<a href="{}">{}</a>', wallet_url(obj.uid), obj.uid)

    @admin.display(description="reason")
    def reason_display(self, obj: BalanceRequest) -> str:
        return f"{obj.get_reason_code_display()}: {obj.reason}"

    @admin.display(description="violation")
    def violation_link(self, obj: BalanceRequest) -> str:
        if obj.violation_id is None:
            return EMPTY
        url = reverse("admin:reconciliation_violation_change", args=[obj.violation_id])
        assert obj.violation is not None  # its id is set
        return format_html(
            '<a href="{}">violation {} (run {})</a>', url, obj.violation_id, obj.violation.run_id
        )

    @admin.display(description="wallet points at proposal")
    def expected_points_display(self, obj: BalanceRequest) -> str:
        return points(obj.expected_points)

    @admin.display(description="ledger sum at proposal")
    def expected_ledger_sum_display(self, obj: BalanceRequest) -> str:
        return points(obj.expected_ledger_sum)

    @admin.display(description="proposed")
    def created(self, obj: BalanceRequest) -> str:
        return when(obj.created_at)

    @admin.display(description="expires")
    def expires(self, obj: BalanceRequest) -> str:
        return when(obj.expires_at)

    @admin.display(description="approved")
    def approved(self, obj: BalanceRequest) -> str:
        return when(obj.approved_at)

    @admin.display(description="applied")
    def applied(self, obj: BalanceRequest) -> str:
        return when(obj.applied_at)

    @admin.display(description="result")
    def result_display(self, obj: BalanceRequest) -> str:
        if not obj.result:
            return EMPTY
        return "; ".join(f"{label(key)}: {shown(value)}" for key, value in obj.result.items())

    @admin.display(description="history")
    def history(self, obj: BalanceRequest) -> str:
        return trail(obj)

    def get_urls(self) -> list[URLPattern]:
        return [*self.change_page_urls(), *super().get_urls()]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        can_propose = may(request.user, "reconciliation.propose_balancerequest")
        return super().changelist_view(request, {**(extra_context or {}), "can_propose": can_propose})

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        obj = self.get_object(request, object_id)
        decide_url = None
        # request.user: a User, the admin lets only staff in
        if obj is not None and change_queries.why_undecidable(obj, cast(User, request.user)) is None:
            decide_url = reverse("admin:reconciliation_balancerequest_decide", args=[obj.pk])
        extra_context = {
            **(extra_context or {}),
            "decide_url": decide_url,
            "wallet_url": wallet_url(obj.uid) if obj is not None else None,
        }
        return super().change_view(request, object_id, form_url, extra_context)


@admin.register(RequestEvent)
class RequestEventAdmin(ReadOnlyAdmin):
    list_display = ["when", "request_link", "change", "who", "reason"]
    list_display_links = ["when"]
    list_filter = ["to_state"]
    list_select_related = ["request", "actor"]
    search_fields = ["=request__uid"]
    search_help_text = "Exact wallet uid"

    @admin.display(description="when", ordering="created_at")
    def when(self, event: RequestEvent) -> str:
        return when(event.created_at)

    @admin.display(description="request", ordering="request")
    def request_link(self, event: RequestEvent) -> str:
        url = reverse("admin:reconciliation_balancerequest_change", args=[event.request_id])
        return format_html('<a href="{}">#{} {}</a>', url, event.request_id, event.request.uid)

    @admin.display(description="change", ordering="to_state")
    def change(self, event: RequestEvent) -> str:
        if event.from_state and event.from_state != event.to_state:
            return f"{state_label(event.from_state)} → {state_label(event.to_state)}"
        return state_label(event.to_state)

    @admin.display(description="who")
    def who(self, event: RequestEvent) -> str:
        return str(event.actor or event.actor_label)


# -- proposing heals (the violation admin's action) ------------------------------


class HealForm(forms.Form):
    strategy = forms.ChoiceField(choices=HealStrategy.choices)
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 60}))


def propose_heal_action(
    modeladmin: admin.ModelAdmin, request: AuthenticatedHttpRequest, queryset: QuerySet[Violation]
) -> HttpResponse | None:
    """Violation admin action: an intermediate page for strategy and reason.

    What cannot be healed (malformed data, a wallet with a heal already open,
    anything while frozen) is said so here, before the form, and left out."""
    selected = list(queryset.select_related("run").order_by("uid"))
    event = freeze.current()
    context = {
        **modeladmin.admin_site.each_context(request),
        "back_url": reverse("admin:reconciliation_violation_changelist"),
        "back_label": "Violations",
    }
    if event is not None:
        return TemplateResponse(
            request,
            FORM_PAGE,
            {
                **context,
                "title": "Heals cannot be proposed now",
                "notice": frozen_text(event),
                "notice_id": "heal-frozen",
                "facts": [],
                "buttons": [],
            },
        )
    form = HealForm(request.POST if "propose" in request.POST else None)
    if "propose" in request.POST and form.is_valid():
        try:
            proposed = changes.propose_heals(
                selected, actor=request.user, gateway=get_gateway(), **form.cleaned_data
            )
        except REFUSALS as exc:
            modeladmin.message_user(request, f"Refused: {exc}", messages.ERROR)
            return None
        approved = sum(1 for r in proposed if r.state == RequestState.APPROVED)
        note = f"; {approved} approved by the auto-heal policy" if approved else ""
        modeladmin.message_user(request, f"{len(proposed)} heal request(s) proposed{note}.", messages.SUCCESS)
        return None
    blocking = change_queries.blocking_heals(selected)
    refusals = {v.pk: change_queries.heal_refusal(v, blocking.get(v.pk)) for v in selected}
    healable = [v for v in selected if not refusals[v.pk]]
    left_out = [v for v in selected if refusals[v.pk]]
    hidden = [("action", "propose_heal"), *(("_selected_action", v.pk) for v in healable)]
    facts = [
        (
            v.uid,
            f"wallet {points(v.wallet_points)}, ledger {points(v.ledger_sum)}, delta {signed(v.delta)}",
        )
        for v in healable
    ] + [(v.uid, refusals[v.pk]) for v in left_out]
    malformed = sum(1 for v in left_out if v.kind != ViolationKind.DRIFT)
    reasons = []
    if malformed:
        reasons.append(
            f"{malformed} malformed (ledger entries or points that rebalance and post adjustment cannot "
            "heal: correct a malformed entry from its break's page, or fix the data first)"
        )
    if len(left_out) > malformed:
        reasons.append(
            f"{len(left_out) - malformed} already being healed, healed or not from a completed run"
        )
    if not left_out:
        intro = ""
    elif healable:
        intro = f"{len(left_out)} of the selected violations are left out: {'; '.join(reasons)}."
    else:
        intro = f"None of the {len(selected)} selected violations can be healed: {'; '.join(reasons)}."
    return TemplateResponse(
        request,
        FORM_PAGE,
        {
            **context,
            "title": f"Propose heals for {len(healable)} violation(s)",
            "intro": intro,
            "form": form if healable else None,
            "form_id": "propose-heal-form",
            "facts": facts,
            "hidden": hidden,
            "buttons": [("propose", "Propose heals", "propose-heals")] if healable else [],
        },
    )
