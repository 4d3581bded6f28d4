"""Admin for heals and manual adjustments: the approvers' queue, one-click
decisions with a reason, proposing adjustments, and each request's history.
Every page calls reconciliation.changes; none carries rules of its own."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.timesince import timesince

from reconciliation import changes
from reconciliation.models import (
    BalanceRequest,
    HealStrategy,
    ReasonCode,
    RequestEvent,
    RequestState,
    ViolationKind,
)
from reconciliation.reports import describe_details
from revassure import policy
from revassure.admin_base import ReadOnlyAdmin
from revassure.firestore import get_gateway
from revassure.freeze import Frozen

FORM_PAGE = "admin/revassure/form_page.html"
REFUSALS = (changes.RequestRefused, PermissionError, Frozen)


class DecisionForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        required=False,
        help_text="Required to reject; recorded with an approval too.",
    )


class AdjustmentForm(forms.Form):
    uid = forms.CharField(label="Wallet uid", max_length=256)
    amount = forms.IntegerField(min_value=-policy.MAX_POINTS, max_value=policy.MAX_POINTS)
    reason_code = forms.ChoiceField(choices=ReasonCode.choices)
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 60}))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The policy in force now, as the services will apply it.
        below_zero = (
            "may take a wallet below zero, as refunds and chargebacks may "
            "(BACKFILL_ALLOW_NEGATIVE_BALANCE is on)"
            if policy.negative_balance_allowed()
            else "may not take a wallet below zero, as refunds and chargebacks may not "
            "(BACKFILL_ALLOW_NEGATIVE_BALANCE is off); checked when proposed, approved and applied"
        )
        amount = self.fields["amount"]
        amount.help_text = f"Signed whole points: negative takes points away. An adjustment {below_zero}."


class HealForm(forms.Form):
    strategy = forms.ChoiceField(choices=HealStrategy.choices)
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 60}))


class AwaitingMeFilter(admin.SimpleListFilter):
    title = "queue"
    parameter_name = "queue"

    def lookups(self, request, model_admin):
        return [("mine", "awaiting my decision")]

    def queryset(self, request, queryset):
        if self.value() == "mine":
            return queryset.filter(pk__in=changes.awaiting(request.user).values("pk"))
        return queryset


@admin.register(BalanceRequest)
class BalanceRequestAdmin(ReadOnlyAdmin):
    change_list_template = "admin/reconciliation/balancerequest/change_list.html"
    list_display = [
        "id",
        "kind",
        "uid",
        "strategy",
        "amount",
        "drift",
        "proposed_by",
        "age",
        "approvals_display",
        "state",
        "decide_link",
    ]
    list_filter = [AwaitingMeFilter, "state", "kind", "strategy"]
    list_select_related = ["proposed_by"]
    search_fields = ["=uid"]
    fields = [
        "kind",
        "uid",
        "state",
        "strategy",
        "amount",
        "reason_code",
        "reason",
        "violation",
        "expected_points",
        "expected_ledger_sum",
        "required_approvals",
        "proposed_by",
        "created_at",
        "expires_at",
        "approved_at",
        "applied_at",
        "result",
        "history",
    ]
    readonly_fields = fields

    @admin.display(description="drift (wallet - ledger)")
    def drift(self, obj):
        return obj.expected_points - obj.expected_ledger_sum

    @admin.display(description="age", ordering="created_at")
    def age(self, obj):
        return timesince(obj.created_at, timezone.now())

    @admin.display(description="approvals")
    def approvals_display(self, obj):
        return f"{obj.approvals.count()}/{obj.required_approvals}"

    @admin.display(description="")
    def decide_link(self, obj):
        if obj.state != RequestState.PROPOSED:
            return ""
        url = reverse("admin:reconciliation_balancerequest_decide", args=[obj.pk])
        return format_html('<a class="button" href="{}">Decide</a>', url)

    @admin.display(description="history")
    def history(self, obj):
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{} &rarr; {}</td><td>{}</td></tr>",
            (
                (
                    f"{e.created_at:%Y-%m-%d %H:%M:%S} UTC",
                    e.actor or e.actor_label,
                    e.from_state or "-",
                    e.to_state,
                    e.reason,
                )
                for e in obj.events.select_related("actor")
            ),
        )
        return format_html(
            "<table><tr><th>when</th><th>who</th><th>state</th><th>why</th></tr>{}</table>", rows
        )

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path(
                "<int:request_id>/decide/",
                wrap(self.decide_view),
                name="reconciliation_balancerequest_decide",
            ),
            path(
                "propose-adjustment/", wrap(self.propose_view), name="reconciliation_balancerequest_propose"
            ),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        can_propose = request.user.has_perm("reconciliation.propose_balancerequest")
        return super().changelist_view(request, {**(extra_context or {}), "can_propose": can_propose})

    def _page(self, request, title, form, **context):
        changelist = reverse("admin:reconciliation_balancerequest_changelist")
        return TemplateResponse(
            request,
            FORM_PAGE,
            {
                **self.admin_site.each_context(request),
                "title": title,
                "form": form,
                "back_url": changelist,
                "back_label": "Balance requests",
                **context,
            },
        )

    def decide_view(self, request, request_id):
        if not request.user.has_perm("reconciliation.approve_balancerequest"):
            raise PermissionDenied
        obj = get_object_or_404(BalanceRequest, pk=request_id)
        form = DecisionForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            reason = form.cleaned_data["reason"]
            try:
                if "reject" in request.POST:
                    changes.reject(obj.pk, actor=request.user, reason=reason)
                    self.message_user(request, f"Request {obj.pk} rejected.", messages.SUCCESS)
                else:
                    decided = changes.approve(obj.pk, actor=request.user, gateway=get_gateway())
                    self._report_approval(request, decided)
            except REFUSALS as exc:
                self.message_user(request, f"Refused: {exc}", messages.ERROR)
            return HttpResponseRedirect(
                reverse("admin:reconciliation_balancerequest_changelist") + "?queue=mine"
            )
        facts = [
            ("request", str(obj)),
            ("proposed by", f"{obj.proposed_by} {timesince(obj.created_at)} ago"),
            ("strategy", obj.get_strategy_display() or "-"),
            ("wallet at proposal", f"{obj.expected_points} points, ledger sum {obj.expected_ledger_sum}"),
            ("reason", f"{obj.get_reason_code_display()}: {obj.reason}"),
            ("approvals", f"{obj.approvals.count()} of {obj.required_approvals} needed"),
            ("expires", f"{obj.expires_at:%Y-%m-%d %H:%M} UTC"),
        ]
        return self._page(
            request,
            f"Decide request {obj.pk}",
            form,
            facts=facts,
            buttons=[("approve", "Approve"), ("reject", "Reject")],
        )

    def _report_approval(self, request, decided):
        if decided.state == RequestState.STALE:
            self.message_user(
                request,
                f"Request {decided.pk} went stale: the wallet changed since it was proposed. "
                "Nothing was applied.",
                messages.WARNING,
            )
        elif decided.state == RequestState.PROPOSED:
            self.message_user(request, f"Approval recorded; request {decided.pk} needs another approver.")
        else:
            self.message_user(
                request, f"Request {decided.pk} approved; a worker applies it now.", messages.SUCCESS
            )

    def propose_view(self, request):
        if not request.user.has_perm("reconciliation.propose_balancerequest"):
            raise PermissionDenied
        form = AdjustmentForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                proposed = changes.propose_adjustment(
                    actor=request.user, gateway=get_gateway(), **form.cleaned_data
                )
            except REFUSALS as exc:
                form.add_error(None, str(exc))
            else:
                self.message_user(
                    request,
                    f"Adjustment {proposed.pk} of {proposed.amount:+d} points for {proposed.uid} proposed; "
                    f"it needs {proposed.required_approvals} approver(s) other than you.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(reverse("admin:reconciliation_balancerequest_changelist"))
        return self._page(
            request,
            "Propose a manual adjustment",
            form,
            intro="Appends a ledger entry and moves the wallet by the amount, once a second person approves.",
            buttons=[("propose", "Propose")],
        )


@admin.register(RequestEvent)
class RequestEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "request", "from_state", "to_state", "actor", "actor_label", "reason"]
    list_filter = ["to_state"]
    list_select_related = ["request", "actor"]
    search_fields = ["=request__uid"]


def propose_heal_action(modeladmin, request, queryset):
    """Violation admin action: an intermediate page for strategy and reason."""
    form = HealForm(request.POST if "propose" in request.POST else None)
    if "propose" in request.POST and form.is_valid():
        try:
            proposed = changes.propose_heals(
                queryset.select_related("run"), actor=request.user, gateway=get_gateway(), **form.cleaned_data
            )
        except REFUSALS as exc:
            modeladmin.message_user(request, f"Refused: {exc}", messages.ERROR)
            return None
        approved = sum(1 for r in proposed if r.state == RequestState.APPROVED)
        note = f"; {approved} approved by the auto-heal policy" if approved else ""
        modeladmin.message_user(request, f"{len(proposed)} heal request(s) proposed{note}.", messages.SUCCESS)
        return None
    # Only drift can be healed: a malformed violation (a non-integer amount or
    # balance, no delta) is said to be so here, before anything is submitted,
    # and left out of the proposal.
    selected = list(queryset.order_by("uid"))
    healable = [v for v in selected if v.kind == ViolationKind.DRIFT]
    malformed = [v for v in selected if v.kind != ViolationKind.DRIFT]
    hidden = [("action", "propose_heal"), *(("_selected_action", v.pk) for v in healable)]
    facts = [
        (v.uid, f"wallet {v.wallet_points}, ledger {v.ledger_sum}, delta {v.delta:+d}") for v in healable
    ] + [
        (
            v.uid,
            f"malformed, cannot be healed: {describe_details(v.details) or 'malformed points or entries'}",
        )
        for v in malformed
    ]
    if not malformed:
        intro = ""
    elif healable:
        intro = (
            f"{len(malformed)} of the selected violations are malformed ledger entries or points: "
            "rebalance and post_adjustment cannot heal them, so they are left out; fix the data first."
        )
    else:
        intro = (
            f"None of the {len(selected)} selected violations can be healed: they are malformed ledger "
            "entries or points, which rebalance and post_adjustment cannot heal; fix the data first."
        )
    return TemplateResponse(
        request,
        FORM_PAGE,
        {
            **modeladmin.admin_site.each_context(request),
            "title": f"Propose heals for {len(healable)} violation(s)",
            "intro": intro,
            "form": form,
            "facts": facts,
            "hidden": hidden,
            "back_url": reverse("admin:reconciliation_violation_changelist"),
            "back_label": "Violations",
            "buttons": [("propose", "Propose heals")] if healable else [],
        },
    )
