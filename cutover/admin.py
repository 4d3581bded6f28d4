"""The Cutover admin: the list, a cutover's page with its seven steps and the
form for the next one only, and the start, abort, JSON and printable pages.
The snapshot and reconcile steps run in the workers from here (cutover/background.py),
with their progress on the page.

Every page checks its permission again (ops run, finance approvers accept, all
three roles view); the rules themselves live in cutover/services.py.
"""

import json
from datetime import datetime, timedelta
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.text import capfirst

from cutover import background, record, runbook, services, steps
from cutover.forms import AbortForm, StartForm, StepForm
from cutover.models import Cutover, CutoverStatus, StepKey, StepState
from cutover.runbook import ACCEPT, RUN, CutoverRefused
from observability.models import RuleName
from reconciliation.models import RunTrigger
from revassure.admin_base import AuthenticatedHttpRequest, ReadOnlyAdmin, row_id
from revassure.firestore import get_gateway
from revassure.formatting import EMPTY, duration, label, points, shown, signed, when
from revassure.refusals import may


def _page(cutover: Cutover) -> str:
    return reverse("admin:cutover_cutover_change", args=[cutover.pk])


@admin.register(Cutover)
class CutoverAdmin(ReadOnlyAdmin):
    list_display = ["name", "target", "status", "started_by", "started_at", "finished_at"]
    list_filter = ["status"]
    list_select_related = ["started_by"]

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("start/", wrap(self.start_view), name="cutover_start"),
            path("<int:object_id>/step/", wrap(self.step_view), name="cutover_step"),
            path("<int:object_id>/abort/", wrap(self.abort_view), name="cutover_abort"),
            path("<int:object_id>/json/", wrap(self.json_view), name="cutover_json"),
            path("<int:object_id>/print/", wrap(self.print_view), name="cutover_print"),
            *super().get_urls(),
        ]

    def _viewable(self, request, object_id) -> Cutover:
        if not self.has_view_permission(request):
            raise PermissionDenied("your role does not include the cutover")
        # The change page's id comes from the address as typed (the other pages' are <int:>).
        number = row_id(str(object_id))
        if number is None:
            raise Http404(f"there is no cutover {object_id!r}")
        return get_object_or_404(Cutover.objects.select_related("started_by", "aborted_by"), pk=number)

    # -- the cutover's page --------------------------------------------------------

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        cutover = self._viewable(request, object_id)
        user = request.user
        background.settle(cutover)  # a snapshot or run that ended records its step
        following = runbook.next_step(cutover) if cutover.status == CutoverStatus.IN_PROGRESS else None
        running = following if following is not None and following.state == StepState.RUNNING else None
        seen = steps.monitoring(cutover)
        can = {
            "run": may(user, RUN) and cutover.status == CutoverStatus.IN_PROGRESS,
            "accept": may(user, ACCEPT),
        }
        form = None
        if following is not None and running is None:
            waiting = following.state == StepState.NEEDS_ACCEPTANCE
            if (waiting and can["accept"]) or (not waiting and can["run"]):
                form = StepForm(initial={"step": following.key})
        rows = [
            {"step": step, "evidence": _evidence_rows(step.evidence), "next": step == following}
            for step in runbook.steps(cutover)
        ]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": str(cutover),
            "cutover": cutover,
            "rows": rows,
            "following": following,
            "running": running,
            "progress": background.progress(running) if running else None,
            "form": form,
            "monitoring": _monitoring_shown(seen),
            "can_abort": can["run"],
            "problems": record.verify(cutover) if cutover.checksum else None,
            "rolled_back": cutover.rollback,
        }
        return TemplateResponse(request, "admin/cutover/cutover/page.html", context)

    def step_view(self, request: AuthenticatedHttpRequest, object_id: int) -> HttpResponse:
        cutover = self._viewable(request, object_id)
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not (may(request.user, RUN) or may(request.user, ACCEPT)):
            raise PermissionDenied("only ops confirm cutover steps")
        form = StepForm(request.POST)
        if not form.is_valid():
            self.message_user(request, "Refused: the form was incomplete.", messages.ERROR)
            return HttpResponseRedirect(_page(cutover))
        data = form.cleaned_data
        step = runbook.step_by_key(cutover, data["step"]) if data["step"] in StepKey.values else None
        if step is not None and step.key in background.IN_WORKERS and step.state == StepState.PENDING:
            try:
                step = background.start(
                    cutover, step.key, actor=request.user, trigger=RunTrigger.ADMIN, note=data["note"]
                )
            except PermissionError as exc:
                raise PermissionDenied(str(exc)) from exc
            except CutoverRefused as exc:
                self.message_user(request, f"Refused: {exc}.", messages.ERROR)
                return HttpResponseRedirect(_page(cutover))
            self.message_user(
                request, f"Step {step} started in the workers: this page shows how far it has got."
            )
            return HttpResponseRedirect(_page(cutover))
        try:
            step = services.confirm(
                cutover,
                data["step"],
                actor=request.user,
                gateway=get_gateway(),
                trigger=RunTrigger.ADMIN,
                note=data["note"],
                revision=data["revision"],
                override=data["override"],
                accept=data["accept"],
            )
        except PermissionError as exc:
            raise PermissionDenied(str(exc)) from exc
        except CutoverRefused as exc:
            self.message_user(request, f"Refused: {exc}.", messages.ERROR)
            return HttpResponseRedirect(_page(cutover))
        if step.state == StepState.NEEDS_ACCEPTANCE:
            self.message_user(
                request,
                f"Run {step.evidence['run_id']} found {step.evidence['violations']} violation(s): a finance "
                "approver must accept and continue, or abort the cutover.",
                messages.WARNING,
            )
        else:
            self.message_user(request, f"Step {step} confirmed.")
        return HttpResponseRedirect(_page(cutover))

    # -- start and abort --------------------------------------------------------------

    def start_view(self, request: AuthenticatedHttpRequest) -> HttpResponse:
        if not may(request.user, RUN):
            raise PermissionDenied("only ops start a cutover")
        form = StartForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                cutover = services.start(actor=request.user, **form.cleaned_data)
            except CutoverRefused as exc:
                form.add_error(None, str(exc))
            else:
                self.message_user(request, f"{cutover} started: confirm step 1 to freeze manual changes.")
                return HttpResponseRedirect(_page(cutover))
        return self._form_page(
            request,
            form,
            title="Start a cutover",
            intro="The runbook's seven steps follow in order; the product freezes, snapshots, "
            "reconciles and unfreezes itself, and records who confirmed each step.",
            buttons=[("start", "Start the cutover")],
        )

    def abort_view(self, request: AuthenticatedHttpRequest, object_id: int) -> HttpResponse:
        cutover = self._viewable(request, object_id)
        if not may(request.user, RUN):
            raise PermissionDenied("only ops abort a cutover")
        if cutover.status != CutoverStatus.IN_PROGRESS:
            self.message_user(
                request, f"{cutover} is {cutover.get_status_display().lower()}.", messages.ERROR
            )
            return HttpResponseRedirect(_page(cutover))
        form = AbortForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                services.abort(cutover, actor=request.user, gateway=get_gateway(), **form.cleaned_data)
            except CutoverRefused as exc:
                form.add_error(None, str(exc))
            else:
                self.message_user(request, f"{cutover} aborted; what is left to do by hand is listed.")
                return HttpResponseRedirect(_page(cutover))
        return self._form_page(
            request,
            form,
            title=f"Abort {cutover}",
            intro="The reason is recorded and the runbook is sealed. Choose what the product rolls "
            "back now; the rest is listed on the cutover's page to do by hand.",
            buttons=[("abort", "Abort the cutover")],
            back=cutover,
        )

    def _form_page(self, request, form, *, title, intro, buttons, back=None):
        return TemplateResponse(
            request,
            "admin/revassure/form_page.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": title,
                "intro": intro,
                "form": form,
                "buttons": buttons,
                "back_url": _page(back) if back else reverse("admin:cutover_cutover_changelist"),
                "back_label": str(back) if back else "Cutovers",
            },
        )

    # -- the record -----------------------------------------------------------------

    def json_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        cutover = self._viewable(request, object_id)
        body = json.dumps(record.export(cutover), sort_keys=True, indent=2)
        response = HttpResponse(body, content_type="application/json")
        response["Content-Disposition"] = f'attachment; filename="cutover-{cutover.pk}.json"'
        return response

    def print_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        cutover = self._viewable(request, object_id)
        return TemplateResponse(
            request,
            "cutover/print.html",
            {
                "cutover": cutover,
                "exported": record.export(cutover),
                "rows": [
                    {"step": step, "evidence": _evidence_rows(step.evidence)}
                    for step in runbook.steps(cutover)
                ],
                "problems": record.verify(cutover) if cutover.checksum else None,
            },
        )


def _monitoring_shown(seen: dict | None) -> dict | None:
    """steps.monitoring as people read it: the end in the viewer's zone, the
    time left in words, rules by their names."""
    if seen is None:
        return None
    return {
        **seen,
        "ends_at": when(datetime.fromisoformat(seen["ends_at"])),
        "time_left": duration(timedelta(seconds=seen["seconds_left"])),
        "open_alerts": [{**a, "rule": capfirst(RuleName(a["rule"]).label)} for a in seen["open_alerts"]],
        "first_deliveries": [
            {**d, "received_at": when(datetime.fromisoformat(d["received_at"]))}
            for d in seen["first_deliveries"]
        ],
    }


# Evidence whose numbers are differences, shown with their sign.
SIGNED = {"liability_difference", "delta"}


def _evidence_rows(evidence: dict) -> list[tuple[str, str]]:
    """Evidence as label/value pairs in people's formats (the JSON export keeps
    the raw values): times in UTC, counts with separators, yes/no, a mapping of
    counts as "drift 50, malformed 3", a list of records one per line."""
    return [
        (key.replace("_", " "), _shown(key, value))
        for key, value in evidence.items()
        if key != "started_by_id"  # the starter's account, for the record; shown by name
    ]


def _shown(key: str, value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) and not key.endswith("_id") and key != "id":
        return signed(value) if key in SIGNED else points(value)
    if isinstance(value, str) and key.endswith(("_at", "_until")):
        try:
            return when(datetime.fromisoformat(value))
        except ValueError:
            return value
    if isinstance(value, dict):
        return ", ".join(f"{label(k).lower()} {_shown(k, v)}" for k, v in value.items()) or EMPTY
    if isinstance(value, list):
        return "\n".join(_record(item) if isinstance(item, dict) else str(item) for item in value) or "none"
    return shown(value)


def _record(item: dict) -> str:
    """One record of a list as people read it: an alert as its rule's name, its
    state and its summary (the raw record was shown as JSON); anything else as
    its fields, labelled."""
    if {"rule", "summary"} <= item.keys():
        rule = RuleName(item["rule"]).label if item["rule"] in RuleName.values else str(item["rule"])
        state = f" ({item['state']})" if item.get("state") else ""
        return f"{capfirst(rule)}{state}: {item['summary']}"
    return ", ".join(f"{label(k).lower()} {_shown(k, v)}" for k, v in item.items()) or EMPTY
