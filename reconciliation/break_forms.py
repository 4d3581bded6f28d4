"""The forms of a break's page (reconciliation/admin_break_page.py): assign, accept, note, and the
proposals of a heal and of a correction, each choice saying what it does to the customer or the ledger
(reconciliation.effects)."""

from __future__ import annotations

from typing import cast

from django import forms
from django.contrib.auth.base_user import AbstractBaseUser

from reconciliation import break_actions, corrections, effects
from reconciliation.change_display import effect_text
from reconciliation.models import HealStrategy, RequestKind
from revassure import ledger, policy
from revassure.formatting import signed


class AssignForm(forms.Form):
    owner: forms.ModelChoiceField[AbstractBaseUser] = forms.ModelChoiceField(
        queryset=None, label="Assign to", empty_label=None
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        cast(forms.ModelChoiceField, self.fields["owner"]).queryset = break_actions.assignees()


class AcceptForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Required: why this difference is written off. Kept on the break's record.",
    )


class NoteForm(forms.Form):
    text = forms.CharField(
        label="Add a note", widget=forms.Textarea(attrs={"rows": 3, "cols": 60, "aria-label": "Note"})
    )


class BreakHealForm(forms.Form):
    """A heal of one break's latest sighting: each strategy says what it does to the customer."""

    strategy = forms.ChoiceField(widget=forms.RadioSelect, label="How to heal")
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 60}), label="Reason")

    def __init__(self, violation, *args, **kwargs):
        super().__init__(*args, **kwargs)
        choices = []
        for strategy in HealStrategy:
            effect = (
                effect_text(effects.heal_effect(violation, strategy)) if violation.delta is not None else ""
            )
            choices.append(
                (strategy.value, f"{strategy.label.capitalize()}: {effect}" if effect else strategy.label)
            )
        cast(forms.ChoiceField, self.fields["strategy"]).choices = choices


class BreakCorrectionForm(forms.Form):
    """A correction of one malformed entry of the break's latest sighting: each
    entry says what it holds, how it reads and what correcting it so does."""

    entry_id = forms.ChoiceField(widget=forms.RadioSelect, label="The malformed entry")
    amount = forms.IntegerField(
        label="Amount it should have been",
        min_value=-policy.MAX_POINTS,
        max_value=policy.MAX_POINTS,
        help_text="Whole points, signed: the correcting entry counts this, the malformed one nothing.",
    )
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 60}), label="Reason")

    def __init__(self, violation, *args, amounts=None, **kwargs):
        """`amounts`: {entry id: raw amount now} when Firestore answered."""
        super().__init__(*args, **kwargs)
        amounts = amounts or {}
        choices, first_reading = [], None
        for entry in corrections.correctable_entries(violation):
            raw = amounts.get(entry.entry_id, corrections.MISSING)
            held = corrections.describe(raw) if entry.entry_id in amounts else entry.amount
            read = ledger.reading(raw)
            if read is None:
                text = f"{entry.entry_id}: {held}, not a number: say what it should have been"
            else:
                effect = effects.effect(
                    kind=RequestKind.CORRECTION,
                    strategy="",
                    amount=read,
                    wallet_points=violation.wallet_points,
                    ledger_sum=violation.ledger_sum,
                )
                text = (
                    f"{entry.entry_id}: {held}, read as {signed(read)}: {effect_text(effect)}{_left(effect)}"
                )
                if first_reading is None:
                    first_reading = read
            choices.append((entry.entry_id, text))
        cast(forms.ChoiceField, self.fields["entry_id"]).choices = choices
        if choices and not self.is_bound:
            self.initial.setdefault("entry_id", choices[0][0])
            if first_reading is not None and len(choices) == 1:
                self.initial.setdefault("amount", first_reading)


def _left(effect: effects.Effect) -> str:
    """What the difference becomes once the ledger moves."""
    before = effect.points_before - effect.ledger_before
    after = effect.points_after - effect.ledger_after
    if after == 0:
        return f"; the difference of {signed(before)} is gone"
    return f"; the difference goes {signed(before)} → {signed(after)}"
