"""A settlement row's own page as the place to close it: its facts, what was
done about it, and in place the one action its kind of break takes that this
person may take now (replay its stored delivery, backfill its reversal,
propose an adjustment with its effect on the customer, mark it explained).
Each posts to a URL of the row and comes back to its page, the list's filters
kept; a person whose role does not take an action is told who does, and why
not now otherwise.

What the page offers is asked of settlement.actions (`row_actions`,
`row_refusal`); the actions are the list's bulk actions given one row, with
their own permission checks. SettlementRowAdmin (admin.py) mixes this in."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.templatetags.admin_urls import add_preserved_filters
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse
from django.views.decorators.http import require_POST

from revassure.firestore import FirestoreError, get_gateway
from revassure.formatting import points, signed
from revassure.refusals import REFUSALS, may
from settlement import actions
from settlement.models import SettlementRow

# What the page calls each action, in the order it lists them.
TITLES = {
    actions.REPLAY: "Replay its stored delivery",
    actions.REVERSE: "Backfill its reversal",
    actions.ADJUST: "Propose a manual adjustment",
    actions.EXPLAIN: "Mark it explained",
}
REASONED = (actions.ADJUST, actions.EXPLAIN)  # the actions that take a reason


class RowReasonForm(forms.Form):
    reason = forms.CharField(
        label="Reason", widget=forms.Textarea(attrs={"rows": 2, "cols": 60}), help_text="Kept with the row."
    )


if TYPE_CHECKING:
    _AdminBase = admin.ModelAdmin  # RowPage is mixed into SettlementRowAdmin
else:
    _AdminBase = object


class RowPage(_AdminBase):
    """The settlement row's page and its in-place actions (a mixin of SettlementRowAdmin)."""

    def row_page_urls(self) -> list[URLPattern]:
        wrap = lambda view: self.admin_site.admin_view(require_POST(view))  # noqa: E731
        return [
            path(f"<int:row_id>/{action}/", wrap(self._view_of(action)), name=f"settlement_row_{action}")
            for action in TITLES
        ]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        row = self.get_object(request, object_id)
        if row is not None:
            extra_context = {**(extra_context or {}), **self.row_page_context(request, row)}
        return super().change_view(request, object_id, form_url, extra_context)

    def row_page_context(self, request: HttpRequest, row: SettlementRow) -> dict:
        offered, refused = [], []
        for action in actions.row_actions(row):
            refusal = actions.row_refusal(row, request.user, action)
            if refusal:
                refused.append((TITLES[action], refusal))
                continue
            url = self._preserved(request, reverse(f"admin:settlement_row_{action}", args=[row.pk]))
            offered.append(
                {
                    "action": action,
                    "title": TITLES[action],
                    "url": url,
                    "what": self._what(row, action),
                    # Prefixed: the page may hold two reasons (ids and names apart).
                    "form": RowReasonForm(prefix=action) if action in REASONED else None,
                }
            )
        return {"row_offered": offered, "row_refused": refused}

    @staticmethod
    def _what(row: SettlementRow, action: str) -> str:
        """What the action does to this row, before it is taken."""
        if action == actions.REPLAY:
            return (
                f"A dry run of stored delivery {row.delivery_id} plans what it credits, writing nothing; "
                "its page then offers the real run, bound to that plan."
            )
        if action == actions.REVERSE:
            return (
                f"A dry run of the {row.type} {row.reference} against payment {row.payment_id} "
                f"({points(row.points)} points) plans the reversal, writing nothing; its page then offers "
                "the real run, bound to that plan."
            )
        if action == actions.ADJUST:
            uid, amount = actions.adjustment_of(row)
            return (
                f"Wallet {uid} moves by {signed(amount)} points, with a ledger entry that settles "
                f"{row.entry_id}, once a second person approves it."
            )
        return "The row stays in the sealed report, shown as explained, with your reason."

    def _view_of(self, action: str):
        def view(request, row_id):
            permission = actions.ROW_ACTIONS[action][0]
            if not may(request.user, permission):
                raise PermissionDenied
            row = get_object_or_404(SettlementRow.objects.select_related("run"), pk=row_id)
            rows, actor = [row], request.user
            if action == actions.REPLAY:
                self._run(
                    request,
                    lambda: actions.replay_missing(rows, actor=actor),
                    lambda m: f"Dry run {m.pk} queued for line {row.line}: read its plan on its page.",
                )
            elif action == actions.REVERSE:
                self._run(
                    request,
                    lambda: actions.propose_reversals(rows, actor=actor),
                    lambda m: f"Reversal backfill dry run {m.pk} queued: read its plan on its page.",
                )
            else:
                form = RowReasonForm(request.POST, prefix=action)
                if not form.is_valid():
                    self.message_user(request, "Refused: say why: a reason is required.", messages.ERROR)
                    return self._back(request, row)
                reason = form.cleaned_data["reason"]
                if action == actions.ADJUST:
                    self._run(
                        request,
                        lambda: actions.propose_adjustments(
                            rows, actor=actor, reason=reason, gateway=get_gateway()
                        ),
                        lambda made: (
                            f"Adjustment {made[0].pk} of {signed(made[0].amount)} points for "
                            f"{made[0].uid} proposed: a second person approves it."
                        ),
                    )
                else:
                    self._run(
                        request,
                        lambda: actions.explain(rows, actor=actor, reason=reason),
                        lambda n: "Row marked explained.",
                    )
            return self._back(request, row)

        return view

    def _run(self, request, func, done) -> None:
        try:
            result = func()
        except REFUSALS as exc:
            self.message_user(request, f"Refused: {exc}.", messages.ERROR)
        except FirestoreError as exc:
            self.message_user(
                request, f"Firestore did not answer ({exc}): nothing was done; try again.", messages.ERROR
            )
        else:
            self.message_user(request, done(result), messages.SUCCESS)

    def _preserved(self, request, url: str) -> str:
        return add_preserved_filters(
            {"preserved_filters": self.get_preserved_filters(request), "opts": self.opts}, url
        )

    def _back(self, request, row) -> HttpResponseRedirect:
        return HttpResponseRedirect(
            self._preserved(request, reverse("admin:settlement_settlementrow_change", args=[row.pk]))
        )
