from datetime import datetime, timedelta
from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import url_has_allowed_host_and_scheme
from django_q import admin as django_q_admin
from django_q.models import Schedule

from revassure import flags, formatting, freeze
from revassure.admin_base import AuthenticatedHttpRequest, BaseAdmin, ReadOnlyAdmin
from revassure.firestore import get_gateway
from revassure.models import FeatureFlag, FeatureFlagChange, FreezeEvent
from revassure.refusals import may

_OVERRIDES = {"default": None, "on": True, "off": False}


def _state(override: bool | None) -> str:
    return {None: "environment default", True: "on", False: "off"}[override]


class FeatureFlagForm(forms.ModelForm):
    state = forms.ChoiceField(
        choices=[("default", "Environment default"), ("on", "On"), ("off", "Off")],
        help_text="An override takes effect at once in every process.",
    )
    change_reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), label="Reason", required=True)

    class Meta:
        model = FeatureFlag
        fields: list[str] = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        override = self.instance.override
        self.fields["state"].initial = next(key for key, value in _OVERRIDES.items() if value is override)


@admin.register(FeatureFlag)
class FeatureFlagAdmin(BaseAdmin):
    form = FeatureFlagForm
    list_display = [
        "name",
        "effective",
        "environment_default",
        "override",
        "updated_by",
        "updated_at",
        "reason",
    ]
    list_select_related = ["updated_by"]
    readonly_fields = [
        "name",
        "environment_default",
        "effective",
        "updated_by",
        "updated_at",
        "reason",
        "history",
    ]
    fields = [*readonly_fields, "state"]

    def get_fields(
        self, request: HttpRequest, obj: FeatureFlag | None = None
    ) -> list[str | list[str] | tuple[str, ...] | tuple[()]]:
        fields = list(super().get_fields(request, obj))
        if self.has_change_permission(request, obj):
            fields.append("change_reason")
        return fields

    @admin.display(boolean=True, description="on now")
    def effective(self, flag: FeatureFlag) -> bool | None:
        return flags.is_enabled(flag.name) if flag.name in flags.known_flags() else None

    @admin.display(boolean=True, description="environment default")
    def environment_default(self, flag: FeatureFlag) -> bool | None:
        return flags.default_for(flag.name) if flag.name in flags.known_flags() else None

    @admin.display(description="history")
    def history(self, flag: FeatureFlag) -> str:
        changes = flag.changes.select_related("actor")[:50]
        if not changes:
            return "never changed"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (f"{c.created_at:%Y-%m-%d %H:%M:%S} UTC", c.actor, _state(c.override), c.reason)
                for c in changes
            ),
        )
        return format_html(
            "<table><tr><th>when</th><th>who</th><th>set to</th><th>why</th></tr>{}</table>", rows
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: FeatureFlag | None = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: FeatureFlag, form: forms.ModelForm, change: bool) -> None:
        override = _OVERRIDES[form.cleaned_data["state"]]
        flags.set_flag(
            obj.name, override, actor=cast(User, request.user), reason=form.cleaned_data["change_reason"]
        )  # the admin lets only a signed-in staff user reach save_model
        obj.refresh_from_db()
        self.message_user(
            request,
            f"Flag {obj.name} is now {'on' if flags.is_enabled(obj.name) else 'off'} "
            f"(changed {timezone.now():%H:%M:%S} UTC).",
            messages.SUCCESS,
        )

    def save_related(self, request: HttpRequest, form: forms.ModelForm, formsets: Any, change: bool) -> None:
        pass  # the history is written by flags.set_flag, never through the form


@admin.register(FeatureFlagChange)
class FeatureFlagChangeAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "flag", "actor", "previous", "override", "effective", "reason"]
    list_filter = ["flag"]
    list_select_related = ["flag", "actor"]


def _back(request, default: str) -> str:
    """Where a form sent from another page (the index's freeze tile) returns: its
    `next`, when it is a page of this site, else `default`."""
    target = request.POST.get("next", "")
    safe = url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return target if target and safe else default


class FreezeForm(forms.Form):
    # The state the person asks for, fixed when the page was loaded: a second
    # click, or a colleague's click on an older page, is refused rather than
    # undoing the first (revassure.freeze.AlreadyInState).
    state = forms.ChoiceField(
        choices=[("freeze", "Freeze"), ("unfreeze", "Unfreeze")],
        widget=forms.HiddenInput,
        error_messages={"required": "The page did not say whether to freeze or unfreeze: load it again."},
    )
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 60}))


@admin.register(FreezeEvent)
class FreezeEventAdmin(ReadOnlyAdmin):
    """The freeze's history; its page freezes or unfreezes, as asked, with a reason."""

    change_list_template = "admin/revassure/freezeevent/change_list.html"
    list_display = ["created_at", "change", "actor", "reason"]
    list_select_related = ["actor"]

    @admin.display(description="change", ordering="frozen")
    def change(self, event: FreezeEvent) -> str:
        return "Froze" if event.frozen else "Unfroze"

    def get_urls(self) -> list[URLPattern]:
        return [
            path("toggle/", self.admin_site.admin_view(self.toggle_view), name="revassure_freeze_toggle"),
            *super().get_urls(),
        ]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        can = may(request.user, "revassure.manage_freeze")
        return super().changelist_view(request, {**(extra_context or {}), "can_manage_freeze": can})

    def toggle_view(self, request: AuthenticatedHttpRequest) -> HttpResponse:
        if not may(request.user, "revassure.manage_freeze"):
            raise PermissionDenied("only ops freeze and unfreeze manual balance changes")
        active = freeze.current()
        form = FreezeForm(request.POST or None, initial={"state": "unfreeze" if active else "freeze"})
        if request.method == "POST" and form.is_valid():
            change = freeze.freeze if form.cleaned_data["state"] == "freeze" else freeze.unfreeze
            try:
                event = change(actor=request.user, reason=form.cleaned_data["reason"], gateway=get_gateway())
            except (ValueError, PermissionError) as exc:
                form.add_error(None, str(exc))
            else:
                state = "frozen" if event.frozen else "unfrozen; approved requests that waited run now"
                self.message_user(request, f"Manual balance changes are {state}.", messages.SUCCESS)
                return HttpResponseRedirect(_back(request, reverse("admin:revassure_freezeevent_changelist")))
        title = "Unfreeze manual balance changes" if active else "Freeze manual balance changes"
        intro = (
            "Heals and manual adjustments will be accepted again; approved requests that waited are "
            "executed if still valid."
            if active
            else "While frozen, proposing, approving and executing heals and manual adjustments is refused. "
            "Reconciliation keeps running. The points app sees the freeze in Firestore config/adjustments."
        )
        latest = freeze.latest()
        if latest is None:
            now = "Not frozen (never frozen)"
        else:
            verb = "Frozen" if latest.frozen else "Not frozen: unfrozen"
            now = f"{verb} {formatting.when(latest.created_at)} by {latest.actor}: {latest.reason}"
        return TemplateResponse(
            request,
            "admin/revassure/form_page.html",
            {
                **self.admin_site.each_context(request),
                "title": title,
                "intro": intro,
                "facts": [("Now", now)],
                "form": form,
                "back_url": reverse("admin:revassure_freezeevent_changelist"),
                "back_label": "Freeze history",
                "buttons": [("submit", "Unfreeze" if active else "Freeze")],
            },
        )


# django-q's scheduler takes every due schedule in one transaction and steps each
# one's next run forward an interval at a time until it is in the future. A
# schedule whose next run cannot be computed (99,999,999,999 minutes, which
# SQLite stores: a date past the calendar) ended that transaction for all of
# them: the daily reconciliation, the sweeps and the alert evaluation stopped
# with it. One whose next run was set years back kept the scheduler stepping
# through every missed minute. The form refuses both.
SCHEDULE_MAX_MINUTES = 32_767  # what the column holds on PostgreSQL (smallint), on every database
SCHEDULE_MAX_BEHIND = timedelta(days=7)


class ScheduleForm(forms.ModelForm):
    minutes = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=SCHEDULE_MAX_MINUTES,
        help_text=f"For the Minutes type: every how many minutes, 1 to {SCHEDULE_MAX_MINUTES:,} (22 days).",
    )

    class Meta:
        model = Schedule
        fields = [
            "name",
            "func",
            "hook",
            "args",
            "kwargs",
            "schedule_type",
            "minutes",
            "repeats",
            "next_run",
            "cron",
            "cluster",
            "intended_date_kwarg",
        ]

    def clean_next_run(self) -> datetime | None:
        next_run = self.cleaned_data.get("next_run")
        behind = SCHEDULE_MAX_BEHIND.days
        if (
            "next_run" in self.changed_data
            and next_run is not None
            and next_run < timezone.now() - SCHEDULE_MAX_BEHIND
        ):
            raise ValidationError(
                f"At most {behind} days ago (the scheduler catches up one interval at a time): "
                "to run it at once, give the present time."
            )
        return next_run


admin.site.unregister(Schedule)


@admin.register(Schedule)
class ScheduleAdmin(django_q_admin.ScheduleAdmin):
    """django-q's schedule admin, with a form that refuses what its scheduler cannot run."""

    form = ScheduleForm
