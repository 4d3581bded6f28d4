"""The cutover freeze of manual balance changes (heals and adjustments).

Ops turn it on and off with a mandatory reason; the history is kept in
FreezeEvent, and the state is mirrored to Firestore `config/adjustments` so
the points app can honour it too. Services call `require_unfrozen()` before
proposing, approving or executing; a request approved before the freeze waits
and is picked up again when `unfrozen` fires.

A procedure that relies on the freeze while it runs (a cutover) holds it: no
one else lifts it until the procedure ends, and the procedure lifts only the
freeze it made (`unfreeze(..., holder=..., event_id=...)`).
"""

from collections.abc import Callable

from django.contrib.auth.models import User
from django.db import transaction
from django.dispatch import Signal

from revassure import alerting
from revassure.firestore import FirestoreGateway
from revassure.models import FreezeEvent
from revassure.refusals import Refused, require

# Sent after an unfreeze is committed; receivers resume what waited.
unfrozen = Signal()


class Frozen(Refused):
    def __init__(self, event: FreezeEvent):
        self.event = event
        super().__init__(
            f"manual balance changes are frozen since {event.created_at:%Y-%m-%d %H:%M} UTC "
            f"by {event.actor}: {event.reason}"
        )


class AlreadyInState(Refused, ValueError):
    """Asked for the state that already holds; names who set it and when.

    Freezing and unfreezing say which state they want (never "toggle"), so a
    second click, or a second person on a page loaded earlier, is refused here
    instead of undoing the first.
    """

    def __init__(self, frozen: bool, event: FreezeEvent | None):
        self.frozen = frozen
        self.event = event
        state = "frozen" if frozen else "unfrozen"
        if event is None:
            detail = "they have never been frozen"
        else:
            verb = "froze" if event.frozen else "unfroze"
            detail = f"{event.actor} {verb} them at {event.created_at:%Y-%m-%d %H:%M:%S} UTC: {event.reason}"
        super().__init__(f"manual balance changes are already {state}; {detail}")


class Held(Refused, ValueError):
    """The freeze is held by a procedure in progress; the message names it."""


class NotTheSameFreeze(Refused, ValueError):
    """Asked to lift one freeze while another is in force; names the one in force."""

    def __init__(self, expected: int, event: FreezeEvent):
        self.event = event
        super().__init__(
            f"the freeze in force is event {event.pk} ({event.actor} froze at "
            f"{event.created_at:%Y-%m-%d %H:%M:%S} UTC: {event.reason}), not freeze event {expected}; "
            "it is left as it is"
        )


# Who holds the freeze in force. The core imports no app, so an app whose
# procedure relies on the freeze registers a check from its AppConfig.ready():
# given the freeze in force, it answers (holder, what to tell anyone else who
# tries to lift it) while it holds it, else None.
HoldCheck = Callable[[FreezeEvent], tuple[str, str] | None]
_hold_checks: list[HoldCheck] = []


def register_hold(check: HoldCheck) -> None:
    if check not in _hold_checks:
        _hold_checks.append(check)


def hold(event: FreezeEvent | None = None) -> tuple[str, str] | None:
    """(holder, message) of the procedure holding the freeze in force, or None."""
    event = event if event is not None else current()
    if event is None:
        return None
    for check in _hold_checks:
        held = check(event)
        if held is not None:
            return held
    return None


def latest() -> FreezeEvent | None:
    """The newest freeze or unfreeze, or None when there never was one."""
    return FreezeEvent.objects.select_related("actor").order_by("-created_at", "-id").first()


def current() -> FreezeEvent | None:
    """The event that froze changes, or None when they are not frozen."""
    event = latest()
    return event if event is not None and event.frozen else None


def require_unfrozen() -> None:
    event = current()
    if event is not None:
        raise Frozen(event)


def freeze(*, actor: User, reason: str, gateway: FirestoreGateway) -> FreezeEvent:
    return _set(True, actor=actor, reason=reason, gateway=gateway)


def unfreeze(
    *, actor: User, reason: str, gateway: FirestoreGateway, holder: str = "", event_id: int | None = None
) -> FreezeEvent:
    """Lift the freeze in force. Refused (Held) while a procedure other than
    `holder` holds it; with `event_id`, refused (NotTheSameFreeze) unless the
    freeze in force is that one: a procedure lifts only the freeze it made."""
    return _set(False, actor=actor, reason=reason, gateway=gateway, holder=holder, event_id=event_id)


def _set(
    frozen: bool,
    *,
    actor,
    reason: str,
    gateway: FirestoreGateway,
    holder: str = "",
    event_id: int | None = None,
) -> FreezeEvent:
    if not reason.strip():
        raise ValueError("a reason is required to freeze or unfreeze")
    require(actor, "revassure.manage_freeze", "freeze or unfreeze manual balance changes")
    with transaction.atomic():
        # Lock the newest event, so of two people asking for the same state at
        # once the second waits, then sees the first one's event and is refused.
        FreezeEvent.objects.select_for_update().order_by("-created_at", "-id").values("id").first()
        before = latest()
        if (before is not None and before.frozen) == frozen:
            raise AlreadyInState(frozen, before)
        if not frozen:
            assert before is not None  # unfreezing: refused above unless a freeze is in force
            if event_id is not None and before.pk != event_id:
                raise NotTheSameFreeze(event_id, before)
            held = hold(before)
            if held is not None and held[0] != holder:
                raise Held(held[1])
        event = FreezeEvent.objects.create(frozen=frozen, reason=reason.strip(), actor=actor)
        # Mirror inside the transaction: if Firestore cannot be told, the
        # freeze does not change here either, so both sides always agree.
        gateway.put_config(
            "adjustments",
            {
                "frozen": frozen,
                "reason": event.reason,
                "changedBy": actor.get_username(),
                "changedAt": event.created_at,
            },
        )
        if not frozen:
            transaction.on_commit(lambda: unfrozen.send(sender=FreezeEvent, event=event))
        alerting.evaluate_soon()
    return event
