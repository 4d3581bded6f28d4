from typing import cast

from django import forms

from cutover.runbook import MAX_MONITOR_MINUTES
from revassure import flags


class StartForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="e.g. points v2 go-live; freeze reasons carry it")
    target = forms.CharField(max_length=100, initial="production", label="Target environment")
    monitor_minutes = forms.IntegerField(
        min_value=1, max_value=MAX_MONITOR_MINUTES, initial=120, label="Planned monitoring (minutes)"
    )


class StepForm(forms.Form):
    step = forms.CharField(widget=forms.HiddenInput)
    note = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    revision = forms.CharField(required=False, max_length=200, label="Image or revision id")
    override = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        label="Override reason",
        help_text="only to confirm before the time has passed or while an alert is open",
    )
    accept = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        label="Reason to accept and continue",
    )


class AbortForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}))
    unfreeze = forms.BooleanField(
        required=False,
        label="Unfreeze",
        help_text="lift the freeze of manual balance changes the cutover made",
    )
    flags_off = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, label="Turn these feature flags off"
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        flags_off = cast(forms.MultipleChoiceField, self.fields["flags_off"])
        flags_off.choices = [(name, name) for name in flags.known_flags()]
