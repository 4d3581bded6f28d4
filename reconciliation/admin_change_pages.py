"""A balance request's pages beyond its list: deciding it (approve, or reject
with a reason, beside the wallet as proposed and as it is now, the effect on
the customer and the trail) and proposing a manual adjustment. Each offers
only what reconciliation.changes would accept (change_queries.why_undecidable, the
freeze) and says why otherwise; the services still refuse on their own.
BalanceRequestAdmin (admin_changes.py) mixes this in."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.timesince import timesince

from reconciliation import break_actions, break_display, change_queries, changes, corrections, effects
from reconciliation.change_display import FORM_PAGE, effect_text, frozen_text, trail, wallet_url
from reconciliation.models import BalanceRequest, ReasonCode, RequestKind, RequestState
from revassure import freeze, policy
from revassure.admin_base import AuthenticatedHttpRequest
from revassure.firestore import FirestoreError, WalletState, get_gateway
from revassure.formatting import EMPTY, points, signed, when
from revassure.ledger import is_points
from revassure.refusals import REFUSALS, may

DECIDE_PAGE = "admin/reconciliation/balancerequest/decide.html"


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


def read_wallet(uid: str) -> tuple[WalletState | None, str]:
    """The wallet and its ledger totals now, or the error text when Firestore
    does not answer (a page still renders, and says so)."""
    try:
        return get_gateway().read_wallets_and_ledgers([uid], concurrency=1)[uid], ""
    except FirestoreError as exc:
        return None, f"Firestore did not answer ({exc}): the wallet cannot be shown now"


if TYPE_CHECKING:
    _AdminBase = admin.ModelAdmin  # ChangePages is mixed into BalanceRequestAdmin
else:
    _AdminBase = object


class ChangePages(_AdminBase):
    """Deciding a request and proposing an adjustment (a mixin of BalanceRequestAdmin)."""

    def change_page_urls(self) -> list[URLPattern]:
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
        ]

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

    def decide_view(self, request: AuthenticatedHttpRequest, request_id: int) -> HttpResponse:
        if not may(request.user, "reconciliation.approve_balancerequest"):
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
        refusal = change_queries.why_undecidable(obj, request.user)
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

    def propose_view(self, request: AuthenticatedHttpRequest) -> HttpResponse:
        if not may(request.user, "reconciliation.propose_balancerequest"):
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
