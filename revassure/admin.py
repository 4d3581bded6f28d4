from django import forms
from django.contrib import admin, messages
from django.utils import timezone

from revassure import flags
from revassure.models import FeatureFlag, FeatureFlagChange

_OVERRIDES = {"default": None, "on": True, "off": False}


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


class FeatureFlagChangeInline(admin.TabularInline):
    model = FeatureFlagChange
    fields = ["created_at", "actor", "previous", "override", "effective", "reason"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


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
    readonly_fields = ["name", "environment_default", "effective", "updated_by", "updated_at", "reason"]
    fields = ["name", "environment_default", "effective", "updated_by", "updated_at", "reason", "state"]
    inlines = [FeatureFlagChangeInline]

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
            f"{obj.name} is now {'on' if flags.is_enabled(obj.name) else 'off'} "
            f"(changed {timezone.now():%H:%M:%S} UTC).",
            messages.SUCCESS,
        )

    def save_related(self, request, form, formsets, change):
        pass  # the history is written by flags.set_flag, never through the form
