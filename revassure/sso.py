"""Staff single sign-on (mozilla-django-oidc, authorization code flow).

Users are matched by verified email; the email's domain must be allowed; the
groups claim (SSO_GROUPS_CLAIM, read from the userinfo endpoint) is mapped to
our roles and re-synced at every sign-in, so a group removed at the provider is
removed here. A user with no mapped group gets no access, and the page they
land on says why.
"""

import logging
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.middleware import SessionRefresh as BaseSessionRefresh

from revassure.roles import ROLES

log = logging.getLogger(__name__)
REFUSAL_KEY = "sso_refusal"


def mapped_roles(claims: dict) -> set[str]:
    """Our role names for the provider's groups (SSO_GROUP_MAP, else same names)."""
    raw = claims.get(settings.SSO_GROUPS_CLAIM) or []
    groups = [raw] if isinstance(raw, str) else [g for g in raw if isinstance(g, str)]
    mapping = settings.SSO_GROUP_MAP or {role: role for role in ROLES}
    return {mapping[g] for g in groups if g in mapping}


class StaffOIDCBackend(OIDCAuthenticationBackend):
    def verify_claims(self, claims: dict[str, Any]) -> bool:
        refusal = self._refusal(claims)
        if refusal:
            log.warning("sso sign-in refused", extra={"email": claims.get("email"), "reason": refusal})
            if self.request is not None:
                self.request.session[REFUSAL_KEY] = refusal
            return False
        return True

    def _refusal(self, claims) -> str:
        email = (claims.get("email") or "").lower()
        if not email or claims.get("email_verified") is not True:
            return "your identity provider did not confirm your email address"
        domain = email.rsplit("@", 1)[-1]
        if domain not in {d.lower() for d in settings.SSO_ALLOWED_DOMAINS}:
            return f"accounts of {domain} may not use revassure"
        if not mapped_roles(claims):
            # The provider took every role away: so do we, for any session still open.
            for user in self.filter_users_by_claims(claims):
                user.groups.clear()
            return (
                "you are in no revassure group (finance-reviewer, finance-approver or ops) at your provider"
            )
        return ""

    def filter_users_by_claims(self, claims: dict[str, Any]) -> QuerySet[User]:
        return self.UserModel.objects.filter(email__iexact=claims.get("email", ""))

    def create_user(self, claims: dict[str, Any]) -> User:
        user = self.UserModel.objects.create_user(claims["email"].lower(), email=claims["email"].lower())
        return self.update_user(user, claims)

    def update_user(self, user: User, claims: dict[str, Any]) -> User:
        roles = mapped_roles(claims)
        user.is_staff = True
        user.save(update_fields=["is_staff"])
        user.groups.set(Group.objects.filter(name__in=roles))
        log.info("sso sign-in", extra={"user": user.get_username(), "roles": sorted(roles)})
        return user


def not_a_password_attempt(request: HttpRequest | None, credentials: dict[str, Any] | None) -> bool:
    """django-axes: leave out of the brute-force count what is not a password login."""
    return not (credentials or {}).get("password")


def refused(request: HttpRequest) -> HttpResponse:
    """Where a refused sign-in lands: why, instead of a redirect loop."""
    reason = request.session.pop(REFUSAL_KEY, "") or "your sign-in was not accepted"
    return render(request, "sso_refused.html", {"reason": reason}, status=403)


class SessionRefresh(BaseSessionRefresh):
    """Only sessions that came from SSO are refreshed; a password session (demo)
    has no ID token to renew and would otherwise be sent to the provider."""

    def is_refreshable_url(self, request: HttpRequest) -> bool:
        return "oidc_id_token_expiration" in request.session and super().is_refreshable_url(request)
