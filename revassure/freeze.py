"""The cutover freeze of manual balance changes (heals and adjustments).

Ops turn it on and off with a mandatory reason; the history is kept in
FreezeEvent, and the state is mirrored to Firestore `config/adjustments` so
the points app can honour it too. Services call `require_unfrozen()` before
proposing, approving or executing; a request approved before the freeze waits
and is picked up again when `unfrozen` fires.
"""

from django.db import transaction
from django.dispatch import Signal

from revassure import alerting
from revassure.firestore import FirestoreGateway
from revassure.models import FreezeEvent

# Sent after an unfreeze is committed; receivers resume what waited.
unfrozen = Signal()


class Frozen(Exception):
    def __init__(self, event: FreezeEvent):
        self.event = event
        super().__init__(
            f"manual balance changes are frozen since {event.created_at:%Y-%m-%d %H:%M} UTC "
            f"by {event.actor}: {event.reason}"
        )


class AlreadyInState(ValueError):
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


def freeze(*, actor, reason: str, gateway: FirestoreGateway) -> FreezeEvent:
    return _set(True, actor=actor, reason=reason, gateway=gateway)


def unfreeze(*, actor, reason: str, gateway: FirestoreGateway) -> FreezeEvent:
    return _set(False, actor=actor, reason=reason, gateway=gateway)


def _set(frozen: bool, *, actor, reason: str, gateway: FirestoreGateway) -> FreezeEvent:
    if not reason.strip():
        raise ValueError("a reason is required to freeze or unfreeze")
    if not actor.has_perm("revassure.manage_freeze"):
        raise PermissionError(f"{actor} may not freeze or unfreeze manual balance changes")
    with transaction.atomic():
        # Lock the newest event, so of two people asking for the same state at
        # once the second waits, then sees the first one's event and is refused.
        FreezeEvent.objects.select_for_update().order_by("-created_at", "-id").values("id").first()
        before = latest()
        if (before is not None and before.frozen) == frozen:
            raise AlreadyInState(frozen, before)
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
