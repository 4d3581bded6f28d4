"""Admin for heals, corrections and manual adjustments: the approvers' queue, one-click
decisions with a reason, proposing adjustments, and each request's history.
Every page calls reconciliation.changes; none carries rules of its own. Pages
offer only what the services would accept (changes.why_undecidable, the
freeze) and say why otherwise; the services still refuse on their own."""

from typing import cast

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Exists, F, OuterRef, Value
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.timesince import timesince

from reconciliation import break_actions, break_display, changes, corrections, effects
from reconciliation.models import (
    BalanceRequest,
    HealStrategy,
    ReasonCode,
    RequestEvent,
    RequestKind,
    RequestState,
    ViolationKind,
)
from revassure import freeze, policy
from revassure.admin_base import ReadOnlyAdmin
from revassure.firestore import FirestoreError, get_gateway
from revassure.formatting import EMPTY, label, points, shown, signed, when
from revassure.ledger import is_points
from revassure.refusals import REFUSALS

FORM_PAGE = "admin/reconciliation/form_page.html"
DECIDE_PAGE = "admin/reconciliation/balancerequest/decide.html"
TRAIL = "admin/reconciliation/balancerequest/trail.html"


class DecisionForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60, "aria-label": "Reason for the decision"}),
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


def wallet_url(uid: str) -> str:
    """The wallet page of a uid (the wallets app's admin view, by its URL name)."""
    return reverse("admin:wallet_lookup") + "?" + urlencode({"uid": uid})


def read_wallet(uid: str):
    """The wallet and its ledger totals now, or the error text when Firestore
    does not answer (a page still renders, and says so)."""
    try:
        return get_gateway().read_wallets_and_ledgers([uid], concurrency=1)[uid], ""
    except FirestoreError as exc:
        return None, f"Firestore did not answer ({exc}): the wallet cannot be shown now"


def frozen_text(event) -> str:
    return (
        f"Manual balance changes are frozen since {when(event.created_at)} by {event.actor}: "
        f"{event.reason.rstrip().rstrip('.')}. Ops unfreeze them from the freeze page."
    )


def effect_text(effect: effects.Effect) -> str:
    """A change's effect as the customer sees it first, their balance, then the ledger."""
    if effect.points_after != effect.points_before:
        before, after = points(effect.points_before), points(effect.points_after)
        balance = f"the customer's balance goes {before} → {after} points"
    else:
        balance = f"the customer's balance stays {points(effect.points_before)} points"
    if effect.ledger_after != effect.ledger_before:
        return (
            f"{balance}; the ledger goes {points(effect.ledger_before)} → {points(effect.ledger_after)} "
            f"(an entry of {signed(effect.ledger_after - effect.ledger_before)})"
        )
    return f"{balance}; the ledger stays {points(effect.ledger_before)}"


def trail(request: BalanceRequest) -> str:
    """The request's audit trail as an HTML table (the change and decide pages)."""
    rows = [
        {
            "when": when(event.created_at),
            "who": event.actor or event.actor_label,
            "change": (
                f"{_state_label(event.from_state)} → {_state_label(event.to_state)}"
                if event.from_state and event.from_state != event.to_state
                else _state_label(event.to_state)
            ),
            "why": event.reason,
            "correlation_id": event.correlation_id,
        }
        for event in request.events.select_related("actor")
    ]
    return render_to_string(TRAIL, {"rows": rows})


def _state_label(state: str) -> str:
    return RequestState(state).label if state in RequestState.values else label(state)


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

    def get_queryset(self, request):
        queryset = super().get_queryset(request).annotate(approvals_count=Count("approvals", distinct=True))
        if request.user.has_perm("reconciliation.approve_balancerequest"):
            mine = changes.awaiting(request.user).filter(pk=OuterRef("pk"))
            return queryset.annotate(decidable=Exists(mine))
        return queryset.annotate(decidable=Value(False))

    @admin.display(description="kind", ordering="kind")
    def kind_display(self, obj):
        return obj.get_kind_display().capitalize()

    @admin.display(description="state", ordering="state")
    def state_display(self, obj):
        return obj.get_state_display()

    @admin.display(description="strategy", ordering="strategy")
    def strategy_display(self, obj):
        return obj.get_strategy_display() if obj.strategy else EMPTY

    @admin.display(description="supersedes entry")
    def supersedes_display(self, obj):
        return obj.supersedes or EMPTY

    @admin.display(description="amount", ordering="amount")
    def amount_display(self, obj):
        return signed(obj.amount)

    @admin.display(
        description="drift (wallet − ledger)", ordering=F("expected_points") - F("expected_ledger_sum")
    )
    def drift(self, obj):
        return signed(obj.expected_points - obj.expected_ledger_sum)

    @admin.display(description="age", ordering="created_at")
    def age(self, obj):
        return timesince(obj.created_at, timezone.now())

    @admin.display(description="approvals")
    def approvals_display(self, obj):
        count = obj.approvals_count if hasattr(obj, "approvals_count") else obj.approvals.count()
        return f"{count}/{obj.required_approvals}"

    @admin.display(description="decide")
    def decide_link(self, obj):
        # Only where the decide page would let this person decide (never a
        # link that ends in a refusal): approvers, not their own, still open.
        if not obj.decidable:
            return ""
        url = reverse("admin:reconciliation_balancerequest_decide", args=[obj.pk])
        return format_html('<a class="button decide-link" href="{}">Decide</a>', url)

    @admin.display(description="wallet")
    def uid_link(self, obj):
        return format_html('<a href="{}">{}</a>', wallet_url(obj.uid), obj.uid)

    @admin.display(description="reason")
    def reason_display(self, obj):
        return f"{obj.get_reason_code_display()}: {obj.reason}"

    @admin.display(description="violation")
    def violation_link(self, obj):
        if obj.violation_id is None:
            return EMPTY
        url = reverse("admin:reconciliation_violation_change", args=[obj.violation_id])
        return format_html(
            '<a href="{}">violation {} (run {})</a>', url, obj.violation_id, obj.violation.run_id
        )

    @admin.display(description="wallet points at proposal")
    def expected_points_display(self, obj):
        return points(obj.expected_points)

    @admin.display(description="ledger sum at proposal")
    def expected_ledger_sum_display(self, obj):
        return points(obj.expected_ledger_sum)

    @admin.display(description="proposed")
    def created(self, obj):
        return when(obj.created_at)

    @admin.display(description="expires")
    def expires(self, obj):
        return when(obj.expires_at)

    @admin.display(description="approved")
    def approved(self, obj):
        return when(obj.approved_at)

    @admin.display(description="applied")
    def applied(self, obj):
        return when(obj.applied_at)

    @admin.display(description="result")
    def result_display(self, obj):
        if not obj.result:
            return EMPTY
        return "; ".join(f"{label(key)}: {shown(value)}" for key, value in obj.result.items())

    @admin.display(description="history")
    def history(self, obj):
        return trail(obj)

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

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, object_id)
        decide_url = None
        if obj is not None and changes.why_undecidable(obj, request.user) is None:
            decide_url = reverse("admin:reconciliation_balancerequest_decide", args=[obj.pk])
        extra_context = {
            **(extra_context or {}),
            "decide_url": decide_url,
            "wallet_url": wallet_url(obj.uid) if obj is not None else None,
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def _page(self, request, title, template=FORM_PAGE, **context):
        return TemplateResponse(
            request,
            template,
            {
                **self.admin_site.each_context(request),
                "title": title,
                "back_url": reverse("admin:reconciliation_balancerequest_changelist"),
                "back_label": "Balance requests",
                **context,
            },
        )

    # -- deciding --------------------------------------------------------------

    def decide_view(self, request, request_id):
        if not request.user.has_perm("reconciliation.approve_balancerequest"):
            raise PermissionDenied
        obj = get_object_or_404(BalanceRequest.objects.select_related("proposed_by"), pk=request_id)
        form = DecisionForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            done = self._decide(request, obj, form)
            if done:
                return HttpResponseRedirect(
                    reverse("admin:reconciliation_balancerequest_changelist") + "?queue=mine"
                )
            obj.refresh_from_db()
        return self._decide_page(request, obj, form)

    def _decide(self, request, obj, form) -> bool:
        """Apply the decision; False (with the refusal on the form) keeps the page."""
        reason = form.cleaned_data["reason"]
        rejecting = "reject" in request.POST
        if rejecting and not reason.strip():
            form.add_error("reason", "A reason is required to reject: say why, for the proposer.")
            return False
        try:
            if rejecting:
                changes.reject(obj.pk, actor=request.user, reason=reason)
            else:
                decided = changes.approve(obj.pk, actor=request.user, gateway=get_gateway(), reason=reason)
        except REFUSALS as exc:
            form.add_error(None, f"Refused: {exc}")
            return False
        if rejecting:
            self.message_user(request, f"Request {obj.pk} rejected.", messages.SUCCESS)
        else:
            self._report_approval(request, decided)
        return True

    def _decide_page(self, request, obj, form):
        refusal = changes.why_undecidable(obj, request.user)
        event = freeze.current()
        live, live_error = read_wallet(obj.uid)
        wallet = _wallet_rows(obj, live)
        last = obj.events.select_related("actor").last()
        approvals = [
            f"{a.approver or a.policy} at {when(a.created_at)}" + (f": {a.reason}" if a.reason else "")
            for a in obj.approvals.select_related("approver")
        ]
        buttons = []
        if refusal is None:
            if event is None:
                buttons.append(("approve", "Approve", "decide-approve"))
            buttons.append(("reject", "Reject", "decide-reject"))
        return self._page(
            request,
            f"Decide request {obj.pk}",
            template=DECIDE_PAGE,
            obj=obj,
            form=form,
            facts=[
                ("request", obj.title),
                ("amount", f"{signed(obj.amount)} points"),
                _how(obj),
                ("reason", f"{obj.get_reason_code_display()}: {obj.reason}"),
                (
                    "proposed by",
                    f"{obj.proposed_by} at {when(obj.created_at)} ({timesince(obj.created_at)} ago)",
                ),
                ("approvals", f"{len(approvals)} of {obj.required_approvals} needed"),
                ("expires", when(obj.expires_at)),
            ],
            approvals=approvals,
            effect=effect_text(effects.request_effect(obj)),
            brk=break_display.summary(break_actions.break_of(obj)),
            wallet_url=wallet_url(obj.uid),
            wallet=wallet,
            live_error=live_error,
            live_missing=live is not None and not live.exists,
            changed=wallet["changed"],
            closed=obj.state != RequestState.PROPOSED,
            state_label=obj.get_state_display(),
            last_event=last,
            last_event_when=when(last.created_at) if last else "",
            refusal=refusal,
            frozen=frozen_text(event) if event and refusal is None else "",
            buttons=buttons,
            trail=trail(obj),
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

    # -- proposing an adjustment -----------------------------------------------

    def propose_view(self, request):
        if not request.user.has_perm("reconciliation.propose_balancerequest"):
            raise PermissionDenied
        initial = {"uid": request.GET.get("uid", "")}
        form = AdjustmentForm(request.POST or None, initial=initial)
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
                    f"Adjustment {proposed.pk} of {signed(proposed.amount)} points for {proposed.uid} "
                    f"proposed; it needs {proposed.required_approvals} approver(s) other than you.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(reverse("admin:reconciliation_balancerequest_changelist"))
        # Said before anything is typed; a post prepared earlier is still refused above.
        event = freeze.current()
        if event is not None and request.method != "POST":
            return self._page(
                request,
                "Propose a manual adjustment",
                notice=frozen_text(event),
                notice_id="propose-frozen",
                form=None,
                buttons=[],
            )
        return self._page(
            request,
            "Propose a manual adjustment",
            form=form,
            form_id="propose-adjustment-form",
            intro="Appends a ledger entry and moves the wallet by the amount, once a second person approves.",
            buttons=[("propose", "Propose", "propose-adjustment")],
        )


def _how(obj: BalanceRequest) -> tuple[str, str]:
    """How the request changes the wallet: a heal's strategy; for a correction,
    the malformed entry it supersedes as it is now (read live) and what it does."""
    if obj.kind != RequestKind.CORRECTION:
        return ("strategy", obj.get_strategy_display() or EMPTY)
    try:
        found = corrections.live_amounts(obj.uid, [obj.supersedes], get_gateway())
    except FirestoreError as exc:
        now = f"cannot be read now (Firestore did not answer: {exc})"
    else:
        now = f"holds {corrections.describe(found[obj.supersedes])}" if found else "is gone from the ledger"
    return (
        "corrects",
        f"entry {obj.supersedes}, which {now}: a new entry of {signed(obj.amount)} points supersedes it "
        "(the malformed entry stays in the ledger and counts for nothing)",
    )


def _wallet_rows(obj: BalanceRequest, live) -> dict:
    """The wallet as proposed and as it is now, formatted, and whether it changed."""
    proposed = {
        "points": points(obj.expected_points),
        "ledger": points(obj.expected_ledger_sum),
        "drift": signed(obj.expected_points - obj.expected_ledger_sum),
    }
    if live is None or not live.exists:
        return {"proposed": proposed, "live": None, "changed": live is not None}
    now = {"points": points(live.points), "ledger": points(live.ledger.total), "drift": EMPTY}
    if is_points(live.points) and is_points(live.ledger.total):
        now["drift"] = signed(live.points - live.ledger.total)
    changed = (live.points, live.ledger.total) != (obj.expected_points, obj.expected_ledger_sum) or not (
        is_points(live.points) and is_points(live.ledger.total)
    )
    return {"proposed": proposed, "live": now, "changed": changed}


@admin.register(RequestEvent)
class RequestEventAdmin(ReadOnlyAdmin):
    list_display = ["when", "request_link", "change", "who", "reason"]
    list_display_links = ["when"]
    list_filter = ["to_state"]
    list_select_related = ["request", "actor"]
    search_fields = ["=request__uid"]
    search_help_text = "Exact wallet uid"

    @admin.display(description="when", ordering="created_at")
    def when(self, event):
        return when(event.created_at)

    @admin.display(description="request", ordering="request")
    def request_link(self, event):
        url = reverse("admin:reconciliation_balancerequest_change", args=[event.request_id])
        return format_html('<a href="{}">#{} {}</a>', url, event.request_id, event.request.uid)

    @admin.display(description="change", ordering="to_state")
    def change(self, event):
        if event.from_state and event.from_state != event.to_state:
            return f"{_state_label(event.from_state)} → {_state_label(event.to_state)}"
        return _state_label(event.to_state)

    @admin.display(description="who")
    def who(self, event):
        return str(event.actor or event.actor_label)


# -- proposing heals (the violation admin's action) ------------------------------


def propose_heal_action(modeladmin, request, queryset):
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
    blocking = changes.blocking_heals(selected)
    refusals = {v.pk: changes.heal_refusal(v, blocking.get(v.pk)) for v in selected}
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
