"""A break's own page as the place to work on it: its facts, sightings, chart,
heal requests and notes, and in place the actions this person may take now
(take, acknowledge, assign, note, propose a heal with its effect on the
customer, propose a correction of a malformed entry with its effect on the
ledger, accept the difference). Each posts to a URL of the break and comes
back to its page, the list's filters kept (Django's preserved filters); a
refused form comes back with what was typed and the reason.

What the page offers, and why it offers no more, is asked of
reconciliation.break_actions (`may`, `refusal`); the actions still refuse on
their own. BreakAdmin (admin_breaks.py) mixes this in; its forms are
reconciliation/break_forms.py."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.templatetags.admin_urls import add_preserved_filters
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.views.decorators.http import require_POST

from reconciliation import break_actions, break_display, corrections
from reconciliation.break_forms import AcceptForm, AssignForm, BreakCorrectionForm, BreakHealForm, NoteForm
from reconciliation.change_display import FORM_PAGE, wallet_url
from reconciliation.models import Break, BreakAction, RequestKind, RequestState, ViolationKind
from revassure.admin_base import AuthenticatedHttpRequest
from revassure.firestore import FirestoreError, get_gateway
from revassure.formatting import EMPTY, points, signed, when
from revassure.refusals import REFUSALS

# The actions the page offers, in the order it lists those it cannot offer now.
OFFERED = [
    (BreakAction.TAKE, "Take"),
    (BreakAction.ACKNOWLEDGE, "Acknowledge"),
    (BreakAction.ASSIGN, "Assign"),
    (BreakAction.PROPOSE_HEAL, "Propose a heal"),
    (BreakAction.PROPOSE_CORRECTION, "Propose a correction"),
    (BreakAction.ACCEPT, "Accept the difference"),
]


if TYPE_CHECKING:
    _AdminBase = admin.ModelAdmin  # BreakPage is mixed into BreakAdmin
else:
    _AdminBase = object


class BreakPage(_AdminBase):
    """The break's page and its in-place actions (a mixin of BreakAdmin)."""

    def break_page_urls(self) -> list[URLPattern]:
        def wrap(view):
            return self.admin_site.admin_view(require_POST(view))

        views = [
            ("take", self.take_view),
            ("acknowledge", self.acknowledge_view),
            ("assign", self.assign_view),
            ("note", self.note_view),
            ("propose-heal", self.propose_heal_view),
            ("propose-correction", self.propose_correction_view),
            ("accept", self.accept_view),
        ]
        return [
            path(f"<int:break_id>/{name}/", wrap(view), name=f"reconciliation_break_{name.replace('-', '_')}")
            for name, view in views
        ]

    # -- the page -----------------------------------------------------------------

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        brk = self.get_object(request, object_id)
        if brk is not None:
            extra_context = {**(extra_context or {}), **self.break_page_context(request, brk)}
        return super().change_view(request, object_id, form_url, extra_context)

    def break_page_context(
        self, request: HttpRequest, brk: Break, *, forms_given: dict[str, forms.Form] | None = None
    ) -> dict:
        user = request.user
        done = {action for action, _ in OFFERED if break_actions.may(user, action)}
        if brk.kind != ViolationKind.MALFORMED:
            done.discard(BreakAction.PROPOSE_CORRECTION)  # a correction is for a malformed entry only
        refusals = {action: break_actions.refusal(brk, user, action) for action in done}
        can = {action: action in done and not refusals[action] for action, _ in OFFERED}
        latest = break_actions.latest_violations([brk]).get(brk.pk)
        given = forms_given or {}
        return {
            **self._history(brk),
            "urls": {
                name: self._preserved(request, reverse(f"admin:reconciliation_break_{name}", args=[brk.pk]))
                for name in (
                    "take",
                    "acknowledge",
                    "assign",
                    "note",
                    "propose_heal",
                    "propose_correction",
                    "accept",
                )
            },
            "wallet_url": wallet_url(brk.uid),
            "can_take": can[BreakAction.TAKE],
            "can_acknowledge": can[BreakAction.ACKNOWLEDGE],
            "can_propose_heal": can[BreakAction.PROPOSE_HEAL],
            "can_propose_correction": can[BreakAction.PROPOSE_CORRECTION],
            "can_accept": can[BreakAction.ACCEPT],
            # Said, not hidden: what this person's role does here, and why not now.
            "refused": [(text, refusals[action]) for action, text in OFFERED if refusals.get(action)],
            "assign_form": (given.get("assign") or AssignForm()) if can[BreakAction.ASSIGN] else None,
            "heal_form": (given.get("heal") or BreakHealForm(latest))
            if can[BreakAction.PROPOSE_HEAL]
            else None,
            **self._correction_context(brk, latest, can[BreakAction.PROPOSE_CORRECTION], given),
            "heal_numbers": self._numbers(brk),
            "delta_text": signed(brk.delta),
            "accept_form": (given.get("accept") or AcceptForm()) if can[BreakAction.ACCEPT] else None,
            "note_form": NoteForm() if break_actions.may(user, BreakAction.NOTE) else None,
        }

    def _correction_context(self, brk, latest, can: bool, given: dict) -> dict:
        """The correction form, its malformed entries read now (one batched read)
        to show what they hold and prefill how they read; said when Firestore
        does not answer (the form still works: the service reads them again)."""
        if not can:
            return {"correction_form": None, "correction_error": ""}
        if given.get("correction") is not None:
            return {"correction_form": given["correction"], "correction_error": ""}
        error, amounts = "", {}
        ids = [m.entry_id for m in corrections.correctable_entries(latest)]
        try:
            amounts = corrections.live_amounts(brk.uid, ids, get_gateway())
        except FirestoreError as exc:
            error = f"Firestore did not answer ({exc}): the entries are shown as the run found them"
        return {"correction_form": BreakCorrectionForm(latest, amounts=amounts), "correction_error": error}

    def _numbers(self, brk) -> str:
        return (
            f"wallet {points(brk.wallet_points)} points, ledger {points(brk.ledger_sum)}, "
            f"delta {signed(brk.delta)}"
        )

    def _history(self, brk) -> dict:
        sightings = list(brk.sightings.select_related("violation", "run"))
        rows, previous = [], None
        for s in sightings:
            delta = s.violation.delta
            change = EMPTY if previous is None or delta is None else signed(delta - previous)
            rows.append(
                {
                    "run_url": reverse("admin:reconciliation_reconciliationrun_change", args=[s.run_id]),
                    "violation_url": reverse("admin:reconciliation_violation_change", args=[s.violation_id]),
                    "run": s.run_id,
                    "seen": when(s.seen_at),
                    "points": points(s.violation.wallet_points),
                    "ledger": points(s.violation.ledger_sum),
                    "delta": signed(delta),
                    "change": change,
                }
            )
            previous = delta
        return {
            "sightings": rows,
            "chart": break_display.delta_chart([(s.seen_at, s.violation.delta) for s in sightings]),
            "notes": [
                {
                    "when": when(n.created_at),
                    "who": n.author or "a run",
                    "action": n.get_action_display(),
                    "text": n.text,
                }
                for n in brk.notes.select_related("author")
            ],
            "heals": [
                {
                    "url": reverse("admin:reconciliation_balancerequest_change", args=[h.pk]),
                    "title": h.title,
                    "state": h.get_state_display().lower(),
                    "what": (
                        f"entry {h.supersedes} superseded by an entry of {signed(h.amount)}"
                        if h.kind == RequestKind.CORRECTION
                        else h.get_strategy_display()
                    ),
                    "when": when(h.created_at),
                }
                for h in break_actions.heals_of(brk)
            ],
        }

    # -- the actions ------------------------------------------------------------------

    def take_view(self, request: AuthenticatedHttpRequest, break_id: int) -> HttpResponse:
        brk = self._posted(request, break_id, BreakAction.TAKE)
        self._run(
            request,
            f"Break {brk.pk} ({brk.uid}) taken: it is yours.",
            break_actions.take,
            [brk.pk],
            actor=request.user,
        )
        if request.POST.get("_from_list"):
            # The list's Take button: back to the list as it was filtered.
            filters = QueryDict(request.POST.get("_changelist_filters", "")).urlencode()
            return HttpResponseRedirect(
                reverse("admin:reconciliation_break_changelist") + (f"?{filters}" if filters else "")
            )
        return self._back(request, brk)

    def acknowledge_view(self, request: AuthenticatedHttpRequest, break_id: int) -> HttpResponse:
        brk = self._posted(request, break_id, BreakAction.ACKNOWLEDGE)
        self._run(
            request, f"Break {brk.pk} acknowledged.", break_actions.acknowledge, [brk.pk], actor=request.user
        )
        return self._back(request, brk)

    def note_view(self, request: AuthenticatedHttpRequest, break_id: int) -> HttpResponse:
        brk = self._posted(request, break_id, BreakAction.NOTE)
        form = NoteForm(request.POST)
        if form.is_valid():
            self._run(
                request,
                "Note added.",
                lambda: break_actions.add_note(brk.pk, actor=request.user, **form.cleaned_data),
            )
        else:
            self.message_user(request, "Refused: a note needs some text.", messages.ERROR)
        return self._back(request, brk)

    def assign_view(self, request: AuthenticatedHttpRequest, break_id: int) -> HttpResponse:
        brk = self._posted(request, break_id, BreakAction.ASSIGN)
        form = AssignForm(request.POST)
        if form.is_valid():
            owner = form.cleaned_data["owner"]
            if self._run(
                request,
                f"Break {brk.pk} assigned to {owner}.",
                break_actions.assign,
                [brk.pk],
                owner=owner,
                actor=request.user,
                form=form,
            ):
                return self._back(request, brk)
        return self._form_page(request, brk, f"Assign break {brk.pk}", form, "assign", "Assign")

    def propose_heal_view(self, request: AuthenticatedHttpRequest, break_id: int) -> HttpResponse:
        brk = self._posted(request, break_id, BreakAction.PROPOSE_HEAL)
        latest = break_actions.latest_violations([brk]).get(brk.pk)
        if latest is None:
            self.message_user(request, "Refused: no run has seen this break yet.", messages.ERROR)
            return self._back(request, brk)
        form = BreakHealForm(latest, request.POST)
        if form.is_valid():
            proposed = self._run(
                request,
                "",
                break_actions.propose_heal,
                [brk.pk],
                actor=request.user,
                gateway=get_gateway(),
                form=form,
                **form.cleaned_data,
            )
            if proposed:
                heal = proposed[0]
                decided = (
                    "approved by the auto-heal policy; a worker applies it"
                    if heal.state == RequestState.APPROVED
                    else "another person approves it"
                )
                self.message_user(
                    request,
                    f"Heal #{heal.pk} proposed ({heal.get_strategy_display()}, "
                    f"{signed(heal.amount)} points): {decided}.",
                    messages.SUCCESS,
                )
                return self._back(request, brk)
        return self._form_page(
            request, brk, f"Propose a heal for break {brk.pk}", form, "propose_heal", "Propose heal"
        )

    def propose_correction_view(self, request: AuthenticatedHttpRequest, break_id: int) -> HttpResponse:
        brk = self._posted(request, break_id, BreakAction.PROPOSE_CORRECTION)
        latest = break_actions.latest_violations([brk]).get(brk.pk)
        if latest is None:
            self.message_user(request, "Refused: no run has seen this break yet.", messages.ERROR)
            return self._back(request, brk)
        form = BreakCorrectionForm(latest, request.POST)
        if form.is_valid():
            proposed = self._run(
                request,
                "",
                break_actions.propose_correction,
                brk.pk,
                actor=request.user,
                gateway=get_gateway(),
                form=form,
                **form.cleaned_data,
            )
            if proposed:
                self.message_user(
                    request,
                    f"{proposed.title} proposed (entry {proposed.supersedes} to count "
                    f"{signed(proposed.amount)} points): another person approves it.",
                    messages.SUCCESS,
                )
                return self._back(request, brk)
        return self._form_page(
            request,
            brk,
            f"Propose a correction for break {brk.pk}",
            form,
            "propose_correction",
            "Propose correction",
        )

    def accept_view(self, request: AuthenticatedHttpRequest, break_id: int) -> HttpResponse:
        brk = self._posted(request, break_id, BreakAction.ACCEPT)
        form = AcceptForm(request.POST)
        if form.is_valid():
            if self._run(
                request,
                f"Break {brk.pk} accepted and closed.",
                break_actions.accept,
                [brk.pk],
                actor=request.user,
                reason=form.cleaned_data["reason"],
                form=form,
            ):
                return self._back(request, brk)
        return self._form_page(
            request, brk, f"Accept the difference of break {brk.pk}", form, "accept", "Accept difference"
        )

    # -- helpers ----------------------------------------------------------------------

    def _posted(self, request, break_id, action) -> Break:
        if not break_actions.may(request.user, action):
            raise PermissionDenied
        return get_object_or_404(Break, pk=break_id)

    def _run(self, request, done: str, func, *args, form=None, **kwargs):
        """Call the action; its refusal goes on the form when there is one (what was
        typed stays), else in a message. The action's result, or None if refused."""
        try:
            result = func(*args, **kwargs)
        except REFUSALS as exc:
            refused = f"Refused: {exc}"
        except FirestoreError as exc:
            refused = f"Firestore did not answer ({exc}): nothing was proposed; try again"
        else:
            if done:
                self.message_user(request, done, messages.SUCCESS)
            return result if result is not None else True
        if form is not None:
            form.add_error(None, refused)
        else:
            self.message_user(request, refused, messages.ERROR)
        return None

    def _preserved(self, request, url: str) -> str:
        return add_preserved_filters(
            {"preserved_filters": self.get_preserved_filters(request), "opts": self.opts}, url
        )

    def _back(self, request, brk) -> HttpResponseRedirect:
        return HttpResponseRedirect(
            self._preserved(request, reverse("admin:reconciliation_break_change", args=[brk.pk]))
        )

    def _form_page(self, request, brk, title, form, action, button):
        back = self._preserved(request, reverse("admin:reconciliation_break_change", args=[brk.pk]))
        return TemplateResponse(
            request,
            FORM_PAGE,
            {
                **self.admin_site.each_context(request),
                "title": title,
                "back_url": back,
                "back_label": f"Break {brk.pk}",
                "facts": [(brk.uid, self._numbers(brk))],
                "form": form,
                "form_id": f"break-{action}-form",
                "hidden": [],
                "buttons": [(action, button, f"break-{action}-submit")],
            },
        )
