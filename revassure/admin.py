from django import forms
from django.contrib import admin, messages
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from revassure import flags
from revassure.models import FeatureFlag, FeatureFlagChange

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
        fields = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        override = self.instance.override
        self.fields["state"].initial = next(key for key, value in _OVERRIDES.items() if value is override)


@admin.register(FeatureFlag)
class FeatureFlagAdmin(admin.ModelAdmin):
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
    fields = [
        "name",
        "environment_default",
        "effective",
        "updated_by",
        "updated_at",
        "reason",
        "history",
        "state",
    ]

    def get_fields(self, request, obj=None):
        fields = list(super().get_fields(request, obj))
        if self.has_change_permission(request, obj):
            fields.append("change_reason")
        return fields

    @admin.display(boolean=True, description="on now")
    def effective(self, flag):
        return flags.is_enabled(flag.name) if flag.name in flags.known_flags() else None

    @admin.display(boolean=True, description="environment default")
    def environment_default(self, flag):
        return flags.default_for(flag.name) if flag.name in flags.known_flags() else None

    @admin.display(description="history")
    def history(self, flag):
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

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        override = _OVERRIDES[form.cleaned_data["state"]]
        flags.set_flag(obj.name, override, actor=request.user, reason=form.cleaned_data["change_reason"])
        obj.refresh_from_db()
        self.message_user(
            request,
            f"Flag {obj.name} is now {'on' if flags.is_enabled(obj.name) else 'off'} "
            f"(changed {timezone.now():%H:%M:%S} UTC).",
            messages.SUCCESS,
        )

    def save_related(self, request, form, formsets, change):
        pass  # the history is written by flags.set_flag, never through the form


@admin.register(FeatureFlagChange)
class FeatureFlagChangeAdmin(admin.ModelAdmin):
    list_display = ["created_at", "flag", "actor", "previous", "override", "effective", "reason"]
    list_filter = ["flag"]
    list_select_related = ["flag", "actor"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
