"""Authorization that does not depend on how people sign in.

Which sign-in methods are on (password, single sign-on) varies by
environment; what a signed-in user, a management command or a task may do must
not. Django asks every backend in AUTHENTICATION_BACKENDS for permissions, so
one of them always reads users' groups and permissions from the database: the
ModelBackend itself when password login is on, else this subclass, which
grants permissions exactly as ModelBackend does and signs nobody in.
"""

from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.http import HttpRequest


class PermissionsOnlyBackend(ModelBackend):
    """ModelBackend's permissions (groups, user permissions, is_active), no password sign-in."""

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> None:
        return None
