from typing import Any

from django.conf import settings
from django.http import HttpRequest

from revassure import freeze as freeze_state


def freeze(request: HttpRequest) -> dict[str, Any]:
    """The active freeze (or None), for the banner on every admin page."""
    if not request.path.startswith("/admin/"):
        return {}
    return {"active_freeze": freeze_state.current()}


def sign_in(request: HttpRequest) -> dict[str, Any]:
    """Which sign-in methods the login page offers."""
    return {"sso_enabled": settings.SSO_ENABLED, "password_login_enabled": settings.PASSWORD_LOGIN_ENABLED}
