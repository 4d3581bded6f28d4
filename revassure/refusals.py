"""One base for every refusal a person can meet.
A refusal is the product saying no to something asked of it (a request to
approve one's own change, a heal of a frozen wallet, a cutover step out of
order, a plan nobody else approved): nothing changed, and the message says why
in words to show the person who asked. Each app raises its own kind (so a test
or a caller can tell them apart), all of them `Refused`, so every entry point
(an admin page, a command, an API) handles them in one way: show the message,
change nothing, never a 500.

Not refusals: failures of the machinery (Firestore away, a lost lease), which
the gateway and the workers report as errors of their own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # types only: this module imports no models at run time
    from django.contrib.auth.models import AnonymousUser, User


class Refused(Exception):
    """Nothing was done; the message says why, for a person."""


# What a page or command shows as a refusal: ours, and Django's and Python's
# own word for "not allowed" (a permission check raising PermissionError).
REFUSALS: tuple[type[Exception], ...] = (Refused, PermissionError)


def may(actor: User | AnonymousUser | None, permission: str) -> bool:
    """Whether `actor` is an active person holding `permission` ("app_label.codename")."""
    return actor is not None and actor.is_active and actor.has_perm(permission)


def require(
    actor: User | AnonymousUser | None, permission: str, doing: str, *, system_may: bool = False
) -> None:
    """Every permission check of the services: refused (PermissionError, which
    pages show as a refusal) unless `actor` may. With `system_may`, no actor at
    all is the product itself (the scheduler through the job API, a command run
    on the server), which may."""
    if actor is None and system_may:
        return
    if not may(actor, permission):
        raise PermissionError(f"{actor} may not {doing}")
