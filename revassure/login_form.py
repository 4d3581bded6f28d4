"""The admin's password sign-in form, saying why a right password is refused."""

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.models import User


class StaffAuthenticationForm(AdminAuthenticationForm):
    """Django's form tells a user who is not staff that the password is wrong,
    which sends them to reset a password that works. Say what is wrong instead:
    only once the password is right, so nothing is told to someone who guesses."""

    def confirm_login_allowed(self, user: User) -> None:
        if user.is_active and not user.is_staff:
            raise forms.ValidationError(
                "Your password is right, but this is not a staff account of the back office, so "
                "revassure cannot open for it. Ask ops or a superuser to grant staff status and a role "
                "(finance-reviewer, finance-approver or ops).",
                code="not_staff",
            )
        super().confirm_login_allowed(user)
