"""Alerts in the admin: open first, then history, view-only but for acknowledge
and silence; rules editable by ops only, each change with a reason."""

from datetime import timedelta
from typing import cast

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.core.exceptions import ValidationError
from django.db.models import Case, IntegerField, Value, When
from django.utils import timezone

from observability import admin_inbox, alerts  # noqa: F401 (admin_inbox registers the inbox page)
from observability.models import ACTIVE, Alert, AlertNotification, AlertRule, AlertRuleChange, Channel
from revassure.admin_base import BaseAdmin
from revassure.formatting import points, when


class ReadOnly:
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class AlertActionForm(ActionForm):
    reason = forms.CharField(required=False, label="Reason")
    # Text here, read by the silence action itself: a bad number is refused with
    # a message saying so, where Django's check of the action form would only
    # say "No action selected".
    hours = forms.CharField(
        required=False,
        initial="4",
        label="Silence for (hours)",
        widget=forms.NumberInput(attrs={"min": 1, "max": alerts.MAX_SILENCE_HOURS}),
    )


SILENCE_HOURS = forms.IntegerField(min_value=1, max_value=alerts.MAX_SILENCE_HOURS)


class NotificationInline(ReadOnly, admin.TabularInline):
    model = AlertNotification
    fields = ["created_at", "kind", "channel", "attempt", "ok", "status_code", "error"]
    readonly_fields = cast(list[str], fields)  # the names above, none grouped
    extra = 0


class StateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "active"

    def lookups(self, request, model_admin):
        return [("yes", "open, acknowledged or silenced"), ("no", "resolved")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(state__in=ACTIVE)
        if self.value() == "no":
            return queryset.filter(state="resolved")
        return queryset


@admin.register(Alert)
class AlertAdmin(ReadOnly, BaseAdmin):
    list_display = ["summary", "rule", "state", "started", "resolved"]
    list_filter = [StateFilter, "rule"]
    list_select_related = ["rule"]
    inlines = [NotificationInline]
    action_form = AlertActionForm
    actions = ["acknowledge", "silence"]
    readonly_fields = [
        "rule",
        "key",
        "state",
        "summary",
        "started_at",
        "opened_at",
        "resolved_at",
        "last_notified_at",
        "acknowledged_by",
        "acknowledged_at",
        "silenced_until",
        "note",
    ]

    def get_queryset(self, request):
        active = Case(When(state__in=ACTIVE, then=Value(0)), default=Value(1), output_field=IntegerField())
        return (
            super()
            .get_queryset(request)
            .annotate(active_first=active)
            .order_by("active_first", "-started_at")
        )

    @admin.display(description="started", ordering="started_at")
    def started(self, obj):
        return when(obj.started_at)

    @admin.display(description="resolved", ordering="resolved_at")
    def resolved(self, obj):
        return when(obj.resolved_at) if obj.resolved_at else "-"

    def has_acknowledge_permission(self, request):
        return request.user.has_perm("observability.acknowledge_alert")

    def _reason(self, request):
        reason = request.POST.get("reason", "").strip()
        if not reason:
            self.message_user(request, "Give a reason.", messages.ERROR)
        return reason

    @admin.action(description="Acknowledge (stop repeats)", permissions=["acknowledge"])
    def acknowledge(self, request, queryset):
        reason = self._reason(request)
        if reason:
            done = sum(alerts.acknowledge(alert, actor=request.user, reason=reason) for alert in queryset)
            self.message_user(request, f"{done} alert(s) acknowledged.")

    @admin.action(description="Silence for the hours given", permissions=["acknowledge"])
    def silence(self, request, queryset):
        try:
            hours = SILENCE_HOURS.clean(request.POST.get("hours", "").strip() or "4")
        except ValidationError as exc:
            self.message_user(
                request, f"Refused: silence for how many hours? {' '.join(exc.messages)}", messages.ERROR
            )
            return
        reason = self._reason(request)
        if reason:
            done = sum(
                alerts.silence(alert, actor=request.user, hours=hours, reason=reason) for alert in queryset
            )
            until = timezone.now() + timedelta(hours=hours)
            self.message_user(request, f"{done} alert(s) silenced until about {when(until)}.")


class RuleForm(forms.ModelForm):
    channels = forms.MultipleChoiceField(
        choices=Channel.choices, widget=forms.CheckboxSelectMultiple, required=False
    )
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), help_text="Why (kept in the history).")

    class Meta:
        model = AlertRule
        fields = ["enabled", "threshold", "second_threshold", "for_minutes", "repeat_minutes", "channels"]

    def clean(self):
        cleaned = super().clean()
        # The service's own rule, asked before save_model calls it.
        for name, problem in alerts.rule_value_problems(self.instance, cleaned).items():
            if name in self.fields and name not in self.errors:
                self.add_error(name, problem)
        return cleaned


class RuleChangeInline(ReadOnly, admin.TabularInline):
    model = AlertRuleChange
    fields = ["created_at", "actor", "changes", "reason"]
    readonly_fields = cast(list[str], fields)  # the names above, none grouped
    extra = 0


@admin.register(AlertRule)
class AlertRuleAdmin(BaseAdmin):
    form = RuleForm
    list_display = [
        "title",
        "enabled",
        "threshold_display",
        "for_minutes",
        "repeat_minutes",
        "channels",
        "description",
    ]
    readonly_fields = ["name", "description", "updated_by", "updated_at"]
    fields = [
        "name",
        "description",
        "enabled",
        "threshold",
        "second_threshold",
        "for_minutes",
        "repeat_minutes",
        "channels",
        "reason",
        "updated_by",
        "updated_at",
    ]
    inlines = [RuleChangeInline]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="rule", ordering="name")
    def title(self, rule):
        return rule.title

    @admin.display(description="threshold", ordering="threshold")
    def threshold_display(self, rule):
        return points(rule.threshold)

    def save_model(self, request, obj, form, change):
        values = {name: form.cleaned_data[name] for name in alerts.EDITABLE}
        alerts.update_rule(obj, actor=request.user, reason=form.cleaned_data["reason"], **values)


@admin.register(AlertRuleChange)
class AlertRuleChangeAdmin(ReadOnly, BaseAdmin):
    list_display = ["created_at", "rule", "actor", "reason"]
    list_select_related = ["rule", "actor"]
