"""Admin for breaks: the reviewers' list (open first, oldest and largest
first), a break's page (its sightings as a table and a chart of its delta, its
probable cause with evidence, its notes, runs and heals), bulk actions (take,
assign, acknowledge, propose heal, accept) and a CSV export of the list as
filtered. Every action calls reconciliation.break_actions; nothing here
carries a rule of its own. Registered by ReconciliationConfig.ready()."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from reconciliation import break_actions, break_display, breaks, changes
from reconciliation.admin import FORMULA_TRIGGERS, csv_response
from reconciliation.admin_changes import FORM_PAGE, HealForm, frozen_text, wallet_url
from reconciliation.models import (
    Break,
    BreakSeverity,
    BreakStatus,
    ProbableCause,
    ViolationKind,
)
from revassure import freeze
from revassure.admin_base import ReadOnlyAdmin, require_row_id
from revassure.firestore import get_gateway
from revassure.formatting import EMPTY, points, signed, when
from revassure.freeze import Frozen

CHANGE_FORM = "admin/reconciliation/break/change_form.html"
REFUSALS = (break_actions.BreakRefused, changes.RequestRefused, PermissionError, Frozen)


def reviewers():
    """The people breaks can be assigned to: active users who may work on them."""
    work = Permission.objects.filter(codename="work_break", content_type__app_label="reconciliation")
    return (
        get_user_model()
        .objects.filter(is_active=True)
        .filter(Q(groups__permissions__in=work) | Q(user_permissions__in=work) | Q(is_superuser=True))
        .distinct()
        .order_by("username")
    )


class AssignForm(forms.Form):
    owner: forms.ModelChoiceField[AbstractBaseUser] = forms.ModelChoiceField(
        queryset=None, label="Assign to", empty_label=None
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["owner"].queryset = reviewers()


class AcceptForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Required: why this difference is written off. Kept on the break's record.",
    )


class NoteForm(forms.Form):
    text = forms.CharField(
        label="Add a note", widget=forms.Textarea(attrs={"rows": 3, "cols": 60, "aria-label": "Note"})
    )


# -- filters ----------------------------------------------------------------------


class StatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("not_closed", "open or acknowledged"), *BreakStatus.choices]

    def queryset(self, request, queryset):
        if self.value() == "not_closed":
            return queryset.exclude(status=BreakStatus.CLOSED)
        if self.value() in BreakStatus.values:
            return queryset.filter(status=self.value())
        return queryset


class AgeFilter(admin.SimpleListFilter):
    title = "age"
    parameter_name = "age"

    def lookups(self, request, model_admin):
        return [(name, breaks.bucket_label(name)) for name in breaks.bucket_names()]

    def queryset(self, request, queryset):
        return queryset.filter(age_bucket=self.value()) if self.value() else queryset


class SeverityFilter(admin.SimpleListFilter):
    title = "severity"
    parameter_name = "severity"

    def lookups(self, request, model_admin):
        return BreakSeverity.choices

    def queryset(self, request, queryset):
        return queryset.filter(severity=self.value()) if self.value() else queryset


class OwnerFilter(admin.SimpleListFilter):
    title = "owner"
    parameter_name = "owner"

    def lookups(self, request, model_admin):
        return [("mine", "mine"), ("nobody", "nobody"), *((str(u.pk), u.get_username()) for u in reviewers())]

    def queryset(self, request, queryset):
        value = self.value()
        if value == "mine":
            return queryset.filter(owner=request.user)
        if value == "nobody":
            return queryset.filter(owner__isnull=True)
        if value:
            return queryset.filter(owner_id=require_row_id(value, "user"))
        return queryset


class CauseFilter(admin.SimpleListFilter):
    title = "probable cause"
    parameter_name = "cause"

    def lookups(self, request, model_admin):
        return [*ProbableCause.choices, ("pending", "not computed yet")]

    def queryset(self, request, queryset):
        if self.value() == "pending":
            return queryset.filter(cause="")
        return queryset.filter(cause=self.value()) if self.value() else queryset


# -- the admin ----------------------------------------------------------------------


@admin.register(Break)
class BreakAdmin(ReadOnlyAdmin):
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
        "owner",
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

    def get_queryset(self, request):
        # Annotated before the ordering, which sorts on the annotations.
        return breaks.annotate(Break.objects.all()).order_by(*self.get_ordering(request))

    def get_ordering(self, request):
        return ["open_rank", "first_seen", "-size"]  # open first, then oldest, then largest

    # -- columns and fields -----------------------------------------------------

    @admin.display(description="status", ordering="status")
    def status_display(self, brk):
        return brk.get_status_display()

    @admin.display(description="how it ended", ordering="resolution")
    def resolution_display(self, brk):
        return brk.get_resolution_display() if brk.resolution else EMPTY

    @admin.display(description="severity", ordering="severity_rank")
    def severity_display(self, brk):
        return BreakSeverity(brk.severity).label

    @admin.display(description="age", ordering="first_seen")
    def age_display(self, brk):
        days = breaks.age_days(brk)
        return f"{days} day{'' if days == 1 else 's'}"

    @admin.display(description="delta (wallet − ledger)", ordering="size")
    def delta_display(self, brk):
        return signed(brk.delta)

    @admin.display(description="sightings", ordering="sightings_count")
    def sightings_display(self, brk):
        return points(brk.sightings_count)

    @admin.display(description="kind", ordering="kind")
    def kind_display(self, brk):
        return brk.get_kind_display()

    @admin.display(description="probable cause", ordering="cause")
    def cause_display(self, brk):
        return brk.get_cause_display() if brk.cause else "not computed yet"

    @admin.display(description="last seen", ordering="last_seen")
    def last_seen_display(self, brk):
        return when(brk.last_seen)

    @admin.display(description="first seen", ordering="first_seen")
    def first_seen_display(self, brk):
        return when(brk.first_seen)

    @admin.display(description="wallet points")
    def wallet_points_display(self, brk):
        return points(brk.wallet_points)

    @admin.display(description="ledger sum")
    def ledger_sum_display(self, brk):
        return points(brk.ledger_sum)

    @admin.display(description="wallet")
    def wallet_link(self, brk):
        return format_html('<a href="{}" id="break-wallet">{}</a>', wallet_url(brk.uid), brk.uid)

    @admin.display(description="what the ledger says")
    def cause_text_display(self, brk):
        return brk.cause_text or EMPTY

    @admin.display(description="evidence")
    def evidence(self, brk):
        return break_display.evidence_table(brk.cause_evidence)

    @admin.display(description="closed")
    def closed_display(self, brk):
        if brk.closed_at is None:
            return EMPTY
        if brk.closed_by_run_id:
            url = reverse("admin:reconciliation_reconciliationrun_change", args=[brk.closed_by_run_id])
            return format_html(
                '{} by <a href="{}">run {}</a>', when(brk.closed_at), url, brk.closed_by_run_id
            )
        return when(brk.closed_at)

    @admin.display(description="healed by")
    def heal_link(self, brk):
        if brk.heal_request_id is None:
            return EMPTY
        url = reverse("admin:reconciliation_balancerequest_change", args=[brk.heal_request_id])
        return format_html('<a href="{}" id="break-heal">Heal #{}</a>', url, brk.heal_request_id)

    @admin.display(description="accepted")
    def accepted_display(self, brk):
        if brk.accepted_at is None:
            return EMPTY
        accepted = f"{signed(brk.accepted_delta)} by {brk.accepted_by} at {when(brk.accepted_at)}"
        return f"{accepted}: {brk.accepted_reason}"

    # -- permissions --------------------------------------------------------------

    def has_work_permission(self, request):
        return request.user.has_perm(break_actions.WORK)

    def has_accept_permission(self, request):
        return request.user.has_perm(break_actions.ACCEPT)

    def has_export_permission(self, request):
        return request.user.has_perm(break_actions.EXPORT)

    def has_propose_permission(self, request):
        return self.has_work_permission(request) and request.user.has_perm(
            "reconciliation.propose_balancerequest"
        )

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
    def take(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True))
        return self._do(
            request, "{n} break(s) taken: they are yours.", break_actions.take, ids, actor=request.user
        )

    @admin.action(description="Acknowledge the selected breaks", permissions=["work"])
    def acknowledge(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True))
        return self._do(
            request, "{n} break(s) acknowledged.", break_actions.acknowledge, ids, actor=request.user
        )

    @admin.action(description="Assign the selected breaks to a reviewer", permissions=["work"])
    def assign(self, request, queryset):
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
    def propose_heal(self, request, queryset):
        selected = list(queryset.order_by("uid"))
        event = freeze.current()
        if event is not None:
            return self._action_page(
                request, "Heals cannot be proposed now", "propose_heal", [], None, notice=frozen_text(event)
            )
        malformed = [b for b in selected if b.kind != ViolationKind.DRIFT]
        if malformed:
            self.message_user(
                request,
                f"Refused: {', '.join(b.uid for b in malformed)} malformed: fix the data first, a heal would "
                "only hide it. Select drift breaks only.",
                messages.ERROR,
            )
            return None
        form = HealForm(request.POST if "propose" in request.POST else None)
        if "propose" in request.POST and form.is_valid():
            return self._do(
                request,
                "{n} heal request(s) proposed; another person approves them.",
                break_actions.propose_heal,
                [b.pk for b in selected],
                actor=request.user,
                gateway=get_gateway(),
                **form.cleaned_data,
            )
        return self._action_page(
            request,
            f"Propose heals for {len(selected)} break(s)",
            "propose_heal",
            selected,
            form,
            button=("propose", "Propose heals"),
        )

    @admin.action(
        description="Accept the difference of the selected breaks (write-off)", permissions=["accept"]
    )
    def accept(self, request, queryset):
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

    @admin.action(description="Export the selected breaks as CSV", permissions=["export"])
    def export_csv(self, request, queryset):
        return csv_response(break_rows(queryset), "breaks.csv")

    def _action_page(self, request, title, action, selected, form, *, button=None, notice=""):
        name, text = button or (action, title.split(" ", 1)[0])
        return TemplateResponse(
            request,
            FORM_PAGE,
            {
                **self.admin_site.each_context(request),
                "title": title,
                "back_url": reverse("admin:reconciliation_break_changelist"),
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
                ],
                "form": form,
                "form_id": f"break-{action}-form",
                "hidden": [("action", action), *(("_selected_action", b.pk) for b in selected)],
                "buttons": [(name, text, f"break-{action}")] if form is not None and selected else [],
            },
        )

    # -- pages ------------------------------------------------------------------------

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("export.csv", wrap(self.export_view), name="reconciliation_break_export"),
            path("<int:break_id>/note/", wrap(self.note_view), name="reconciliation_break_note"),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        query = request.GET.copy()
        query.pop("e", None)
        export_url = reverse("admin:reconciliation_break_export")
        extra_context = {
            **(extra_context or {}),
            "export_url": export_url + (f"?{query.urlencode()}" if query else ""),
            "can_export": self.has_export_permission(request),
        }
        return super().changelist_view(request, extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        brk = self.get_object(request, object_id)
        if brk is not None:
            extra_context = {**(extra_context or {}), **self._page_context(request, brk)}
        return super().change_view(request, object_id, form_url, extra_context)

    def _page_context(self, request, brk) -> dict:
        sightings = list(brk.sightings.select_related("violation", "run"))
        rows, previous = [], None
        for s in sightings:
            delta = s.violation.delta
            change = (
                EMPTY if previous is None or delta is None or previous is None else signed(delta - previous)
            )
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
        can_work = self.has_work_permission(request)
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
                    "pk": h.pk,
                    "state": h.get_state_display().lower(),
                    "strategy": h.get_strategy_display(),
                    "when": when(h.created_at),
                }
                for h in break_actions.heals_of(brk)
            ],
            "note_form": NoteForm() if can_work else None,
            "note_url": reverse("admin:reconciliation_break_note", args=[brk.pk]),
            "action_url": reverse("admin:reconciliation_break_changelist"),
            "wallet_url": wallet_url(brk.uid),
            "break_buttons": [
                ("take", "Take", "break-take", can_work and brk.is_open and brk.owner_id != request.user.pk),
                (
                    "acknowledge",
                    "Acknowledge",
                    "break-acknowledge",
                    can_work and brk.status == BreakStatus.OPEN and brk.owner_id in (None, request.user.pk),
                ),
                (
                    "propose_heal",
                    "Propose heal",
                    "break-propose-heal",
                    self.has_propose_permission(request) and brk.is_open and brk.kind == ViolationKind.DRIFT,
                ),
                (
                    "accept",
                    "Accept difference",
                    "break-accept",
                    self.has_accept_permission(request) and brk.is_open and brk.delta is not None,
                ),
            ],
        }

    def note_view(self, request, break_id):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_work_permission(request):
            raise PermissionDenied
        brk = get_object_or_404(Break, pk=break_id)
        form = NoteForm(request.POST)
        if form.is_valid():
            self._do(
                request,
                "Note added.",
                lambda: [break_actions.add_note(brk.pk, actor=request.user, **form.cleaned_data)],
            )
        else:
            self.message_user(request, "Refused: a note needs some text.", messages.ERROR)
        return HttpResponseRedirect(reverse("admin:reconciliation_break_change", args=[brk.pk]))

    def export_view(self, request):
        """The break list as filtered on the page (same query string), as CSV."""
        if not self.has_export_permission(request):
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            return HttpResponseRedirect(reverse("admin:reconciliation_break_changelist") + "?e=1")
        return csv_response(break_rows(changelist.queryset), "breaks.csv")


# -- CSV ------------------------------------------------------------------------------

BREAK_HEADER = [
    "id",
    "uid",
    "status",
    "resolution",
    "kind",
    "severity",
    "delta",
    "wallet_points",
    "ledger_sum",
    "first_seen",
    "last_seen",
    "age_days",
    "age_bucket",
    "sightings",
    "owner",
    "cause",
    "cause_text",
    "heal_request_id",
    "accepted_by",
    "accepted_reason",
    "closed_at",
]


def break_rows(queryset):
    """The header, then one row per break: raw values, text cells guarded against formulas."""
    yield BREAK_HEADER
    now = timezone.now()
    for b in breaks.annotate(queryset, now).select_related("owner", "accepted_by").iterator(chunk_size=2000):
        yield [
            b.pk,
            _cell(b.uid),
            b.status,
            b.resolution,
            b.kind,
            b.severity,
            b.delta,
            b.wallet_points,
            b.ledger_sum,
            b.first_seen.isoformat(),
            b.last_seen.isoformat(),
            breaks.age_days(b, now),
            b.age_bucket,
            b.sightings_count,
            b.owner.get_username() if b.owner else "",
            b.cause,
            _cell(b.cause_text),
            b.heal_request_id or "",
            b.accepted_by.get_username() if b.accepted_by else "",
            _cell(b.accepted_reason),
            b.closed_at.isoformat() if b.closed_at else "",
        ]


def _cell(value: str) -> str:
    return "'" + value if value.startswith(FORMULA_TRIGGERS) else value
