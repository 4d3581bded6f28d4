"""Alerts in the admin: open first, then history, view-only but for acknowledge
and silence; rules editable by ops only, each change with a reason."""

from datetime import timedelta
from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.db.models import Case, IntegerField, QuerySet, Value, When
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html

from observability import admin_inbox, alerts, targets  # noqa: F401 (admin_inbox registers the inbox page)
from observability.models import ACTIVE, Alert, AlertNotification, AlertRule, AlertRuleChange, Channel
from revassure.admin_base import AuthenticatedHttpRequest, BaseAdmin
from revassure.formatting import points, when
from revassure.refusals import may


class ReadOnly:
    def has_add_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
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

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", "open, acknowledged or silenced"), ("no", "resolved")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Alert]) -> QuerySet[Alert]:
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
    change_form_template = "admin/observability/alert/change_form.html"
    readonly_fields = [
        "rule",
        "key",
        "state",
        "summary",
        "where_to_look",
        "started_at",
        "opened_at",
        "resolved_at",
        "last_notified_at",
        "acknowledged_by",
        "acknowledged_at",
        "silenced_until",
        "note",
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Alert]:
        active = Case(When(state__in=ACTIVE, then=Value(0)), default=Value(1), output_field=IntegerField())
        return (
            super()
            .get_queryset(request)
            .annotate(active_first=active)
            .order_by("active_first", "-started_at")
        )

    # Names only, no groups: django-stubs' return type holds lists of groups, and a list is invariant.
    def get_fields(  # type: ignore[override]
        self, request: HttpRequest, obj: Alert | None = None
    ) -> list[str] | tuple[str, ...]:
        return self.readonly_fields

    @admin.display(description="where to look")
    def where_to_look(self, obj: Alert) -> str:
        found = targets.where_to_look(obj)
        if found is None:
            return "-"
        return format_html('<a href="{}" id="alert-where">{}</a>', found[1], found[0])

    @admin.display(description="started", ordering="started_at")
    def started(self, obj: Alert) -> str:
        return when(obj.started_at)

    @admin.display(description="resolved", ordering="resolved_at")
    def resolved(self, obj: Alert) -> str:
        return when(obj.resolved_at) if obj.resolved_at else "-"

    def has_acknowledge_permission(self, request: HttpRequest) -> bool:
        return may(request.user, alerts.ACKNOWLEDGE_PERMISSION)

    def _reason(self, request):
        reason = request.POST.get("reason", "").strip()
        if not reason:
            self.message_user(request, "Give a reason.", messages.ERROR)
        return reason

    @admin.action(description="Acknowledge (stop repeats)", permissions=["acknowledge"])
    def acknowledge(self, request: AuthenticatedHttpRequest, queryset: QuerySet[Alert]) -> None:
        reason = self._reason(request)
        if reason:
            done = sum(alerts.acknowledge(alert, actor=request.user, reason=reason) for alert in queryset)
            self.message_user(request, f"{done} alert(s) acknowledged.")

    @admin.action(description="Silence for the hours given", permissions=["acknowledge"])
    def silence(self, request: AuthenticatedHttpRequest, queryset: QuerySet[Alert]) -> None:
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

    # -- one alert: acknowledge or silence it from its page (or its email's links) ---------

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path(
                "<int:alert_id>/acknowledge/",
                wrap(self.acknowledge_view),
                name="observability_alert_acknowledge",
            ),
            path("<int:alert_id>/silence/", wrap(self.silence_view), name="observability_alert_silence"),
            *super().get_urls(),
        ]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        alert = self.get_object(request, object_id)
        if alert is not None:
            offers = {
                doing: alerts.refusal(alert, request.user, doing) for doing in ("acknowledge", "silence")
            }
            # Ops are told why not; the other roles were never offered it.
            told = may(request.user, alerts.ACKNOWLEDGE_PERMISSION)
            extra_context = {
                **(extra_context or {}),
                "acknowledge_url": None
                if offers["acknowledge"]
                else reverse("admin:observability_alert_acknowledge", args=[alert.pk]),
                "silence_url": None
                if offers["silence"]
                else reverse("admin:observability_alert_silence", args=[alert.pk]),
                "refused": [(doing.capitalize(), why) for doing, why in offers.items() if why]
                if told
                else [],
            }
        return super().change_view(request, object_id, form_url, extra_context)

    def acknowledge_view(self, request: AuthenticatedHttpRequest, alert_id: int) -> HttpResponse:
        return self._alert_form(request, alert_id, "acknowledge", AcknowledgeForm)

    def silence_view(self, request: AuthenticatedHttpRequest, alert_id: int) -> HttpResponse:
        return self._alert_form(request, alert_id, "silence", SilenceForm)

    def _alert_form(self, request, alert_id, doing, form_class):
        """GET: the alert and a form (what an email's link opens); POST: do it, back to the alert."""
        if not may(request.user, alerts.ACKNOWLEDGE_PERMISSION):
            raise PermissionDenied
        alert = get_object_or_404(Alert.objects.select_related("rule"), pk=alert_id)
        page = reverse("admin:observability_alert_change", args=[alert.pk])
        form = form_class(request.POST if request.method == "POST" else None)
        refused = alerts.refusal(alert, request.user, doing)
        if request.method == "POST" and not refused and form.is_valid():
            try:
                if doing == "acknowledge":
                    done = alerts.acknowledge(alert, actor=request.user, reason=form.cleaned_data["reason"])
                else:
                    done = alerts.silence(alert, actor=request.user, **form.cleaned_data)
            except (ValueError, PermissionError) as exc:
                form.add_error(None, f"Refused: {exc}")
            else:
                if done:
                    alert.refresh_from_db()
                    said = (
                        f"Alert {alert.pk} acknowledged: no more repeats; it still says when it resolves."
                        if doing == "acknowledge"
                        else f"Alert {alert.pk} silenced until {when(alert.silenced_until)}."
                    )
                    self.message_user(request, said, messages.SUCCESS)
                    return HttpResponseRedirect(page)
                alert.refresh_from_db()
                refused = alerts.refusal(alert, request.user, doing) or "it changed meanwhile"
        title = f"{doing.capitalize()} alert {alert.pk}"
        return TemplateResponse(
            request,
            "admin/reconciliation/form_page.html",
            {
                **self.admin_site.each_context(request),
                "title": title,
                "back_url": page,
                "back_label": f"Alert {alert.pk}",
                "notice": f"This alert cannot be {doing}d now: {refused}." if refused else "",
                "notice_id": f"alert-{doing}-refused",
                "intro": form_class.intro,
                "facts": [
                    ("rule", alert.rule.title),
                    ("what", alert.summary),
                    ("state", alert.get_state_display()),
                    ("open since", when(alert.opened_at or alert.started_at)),
                ],
                "form": None if refused else form,
                "form_id": f"alert-{doing}-form",
                "hidden": [],
                "buttons": [] if refused else [(doing, doing.capitalize(), f"alert-{doing}")],
            },
        )


class AcknowledgeForm(forms.Form):
    intro = (
        "Acknowledging says someone is on it: the repeats stop, and the alert still says when it resolves."
    )
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        help_text="Kept with the alert: who looks, and why.",
    )


class SilenceForm(forms.Form):
    intro = "Silencing sends nothing for the hours given, not even the resolution; then it repeats again."
    hours = forms.IntegerField(
        min_value=1, max_value=alerts.MAX_SILENCE_HOURS, initial=4, label="Silence for (hours)"
    )
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}), help_text="Kept with the alert."
    )


class RuleForm(forms.ModelForm):
    channels = forms.MultipleChoiceField(
        choices=Channel.choices, widget=forms.CheckboxSelectMultiple, required=False
    )
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), help_text="Why (kept in the history).")

    class Meta:
        model = AlertRule
        fields = ["enabled", "threshold", "second_threshold", "for_minutes", "repeat_minutes", "channels"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        assert cleaned is not None  # a ModelForm's clean returns its cleaned_data
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

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AlertRule | None = None) -> bool:
        return False

    @admin.display(description="rule", ordering="name")
    def title(self, rule: AlertRule) -> str:
        return rule.title

    @admin.display(description="threshold", ordering="threshold")
    def threshold_display(self, rule: AlertRule) -> str:
        return points(rule.threshold)

    def save_model(self, request: HttpRequest, obj: AlertRule, form: forms.ModelForm, change: bool) -> None:
        values = {name: form.cleaned_data[name] for name in alerts.EDITABLE}
        # The admin lets only a signed-in staff user reach save_model.
        alerts.update_rule(obj, actor=cast(User, request.user), reason=form.cleaned_data["reason"], **values)


@admin.register(AlertRuleChange)
class AlertRuleChangeAdmin(ReadOnly, BaseAdmin):
    list_display = ["created_at", "rule", "actor", "reason"]
    list_select_related = ["rule", "actor"]
