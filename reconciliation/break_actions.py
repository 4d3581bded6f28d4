"""What people do with breaks: assign, take, acknowledge, note, accept,
propose a heal, propose a correction of a malformed entry. Each checks the
permission, runs in one atomic block over the selected breaks (all or none)
and appends a note to each (who, when, what): a break's story. Reviewers
work on breaks (`work_break`); approvers accept a difference
(`accept_break`, with a reason); heals and corrections go through the
maker-checker of reconciliation.changes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, TypedDict

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser, Permission, User
from django.db import transaction
from django.db.models import F, Max, Q, QuerySet
from django.utils import timezone

from reconciliation import change_queries, changes, corrections
from reconciliation.models import (
    BREAK_TRANSITIONS,
    OPEN_BREAK_STATES,
    OPEN_STATES,
    REPAIR_KINDS,
    BalanceRequest,
    Break,
    BreakAction,
    BreakNote,
    BreakResolution,
    BreakSighting,
    BreakStatus,
    Violation,
)
from revassure import freeze, refusals
from revassure.firestore import FirestoreGateway
from revassure.formatting import signed
from revassure.refusals import Refused, require
from revassure.waiting import WaitingKind, announce

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations

log = logging.getLogger(__name__)

WORK = "reconciliation.work_break"
ACCEPT = "reconciliation.accept_break"
EXPORT = "reconciliation.export_break"


class BreakRefused(Refused):
    """A break cannot do what was asked; the message says why, for a person."""


def assign(break_ids: Iterable[int], *, owner: User, actor: User) -> list[Break]:
    """Give open breaks to a reviewer. Assigned to someone else, a break waits
    (open) for them to acknowledge it; assigned to oneself, it is acknowledged."""
    require(actor, WORK, "assign breaks")
    if not refusals.may(owner, WORK):
        raise BreakRefused(f"{owner} cannot work on breaks: assign them to a finance reviewer")
    action = BreakAction.TAKE if owner.pk == actor.pk else BreakAction.ASSIGN
    to = BreakStatus.ACKNOWLEDGED if owner.pk == actor.pk else BreakStatus.OPEN
    with transaction.atomic():
        breaks = _open_locked(break_ids, "assigned")
        for brk in breaks:
            if brk.owner_id == owner.pk and (
                brk.status == BreakStatus.ACKNOWLEDGED or to == BreakStatus.OPEN
            ):
                continue  # theirs already
            was = f" (was {brk.owner})" if brk.owner_id not in (None, owner.pk) else ""
            brk.owner = owner
            _transition(brk, to)
            brk.save(update_fields=["owner", "status"])
            text = f"Taken by {actor}{was}" if action == BreakAction.TAKE else f"Assigned to {owner}{was}"
            _note(brk, actor, action, text)
            if action == BreakAction.ASSIGN:
                announce(WaitingKind.BREAK, brk.pk)
    return breaks


def assignees() -> QuerySet:
    """The people breaks can be assigned to: active users who may work on them."""
    work = Permission.objects.filter(codename="work_break", content_type__app_label="reconciliation")
    return (
        get_user_model()
        .objects.filter(is_active=True)
        .filter(Q(groups__permissions__in=work) | Q(user_permissions__in=work) | Q(is_superuser=True))
        .distinct()
        .order_by("username")
    )


class AssignedAt(TypedDict):
    """What assigned_to adds to each break."""

    assigned_at: datetime | None


def assigned_to(user: User) -> QuerySet[WithAnnotations[Break, AssignedAt]]:
    """The open breaks this user owns, each with `assigned_at`: when it last
    became theirs (assigned or taken; its first sighting if no note says)."""
    became = Q(notes__action__in=[BreakAction.ASSIGN, BreakAction.TAKE, BreakAction.ACKNOWLEDGE])
    return (
        Break.objects.filter(owner=user, owner__is_active=True, status__in=OPEN_BREAK_STATES)
        .annotate(assigned_at=Max("notes__created_at", filter=became))
        .order_by("first_seen", "pk")
    )


def take(break_ids: Iterable[int], *, actor: User) -> list[Break]:
    return assign(break_ids, owner=actor, actor=actor)


def acknowledge(break_ids: Iterable[int], *, actor: User) -> list[Break]:
    """The owner says they are on it; an unowned break becomes theirs."""
    require(actor, WORK, "acknowledge breaks")
    with transaction.atomic():
        breaks = _open_locked(break_ids, "acknowledged")
        others = [b for b in breaks if _someone_elses(b, actor)]
        if others:
            raise BreakRefused(
                "; ".join(f"break {b.pk} ({b.uid}): {_someone_elses(b, actor)}" for b in others)
            )
        for brk in breaks:
            if brk.status == BreakStatus.ACKNOWLEDGED:
                continue
            brk.owner = actor
            _transition(brk, BreakStatus.ACKNOWLEDGED)
            brk.save(update_fields=["owner", "status"])
            _note(brk, actor, BreakAction.ACKNOWLEDGE, f"Acknowledged by {actor}")
    return breaks


def add_note(break_id: int, *, actor: User, text: str) -> BreakNote:
    require(actor, WORK, "add notes to breaks")
    if not text or not text.strip():
        raise BreakRefused("a note needs some text")
    with transaction.atomic():
        brk = Break.objects.select_for_update().get(pk=break_id)
        return _note(brk, actor, BreakAction.NOTE, text.strip())


def accept(break_ids: Iterable[int], *, actor: User, reason: str) -> list[Break]:
    """An approver accepts each break's current difference (a write-off, with a
    reason): closed as accepted, kept on record; the same delta seen again does
    not reopen it, a different one does."""
    require(actor, ACCEPT, "accept breaks")
    if not reason or not reason.strip():
        raise BreakRefused("a reason is required to accept a difference")
    now = timezone.now()
    with transaction.atomic():
        breaks = _open_locked(break_ids, "accepted")
        unknown = [b for b in breaks if b.delta is None]
        if unknown:
            raise BreakRefused(f"{', '.join(b.uid for b in unknown)}: {NO_DIFFERENCE}")
        heals = _open_heals([b.uid for b in breaks])
        if heals:
            raise BreakRefused("; ".join(f"{uid}: {_heal_open(heal)}" for uid, heal in sorted(heals.items())))
        for brk in breaks:
            _transition(brk, BreakStatus.CLOSED)
            brk.resolution, brk.closed_at = BreakResolution.ACCEPTED, now
            brk.accepted_by, brk.accepted_at, brk.accepted_delta = actor, now, brk.delta
            brk.accepted_reason = reason.strip()
            brk.save(
                update_fields=[
                    "status",
                    "resolution",
                    "closed_at",
                    "accepted_by",
                    "accepted_at",
                    "accepted_delta",
                    "accepted_reason",
                ]
            )
            _note(
                brk,
                actor,
                BreakAction.ACCEPT,
                f"Accepted a difference of {signed(brk.delta)}: {reason.strip()}",
            )
    return breaks


def propose_heal(
    break_ids: Iterable[int], *, actor: User, strategy: str, reason: str, gateway: FirestoreGateway
) -> list[BalanceRequest]:
    """Propose a heal of each break's latest sighting, through the maker-checker
    of reconciliation.changes (all or none, one strategy and reason)."""
    require(actor, WORK, "propose heals for breaks")
    breaks = list(Break.objects.filter(pk__in=list(break_ids)).order_by("uid"))
    closed = [b for b in breaks if not b.is_open]
    if closed:
        raise BreakRefused(f"{', '.join(f'break {b.pk}' for b in closed)} closed: nothing to heal")
    latest = latest_violations(breaks)
    proposed = changes.propose_heals(
        [latest[b.pk] for b in breaks], actor=actor, strategy=strategy, reason=reason, gateway=gateway
    )
    by_uid = {r.uid: r for r in proposed}
    with transaction.atomic():
        for brk in breaks:
            request = by_uid[brk.uid]
            _note(
                brk,
                actor,
                BreakAction.PROPOSE_HEAL,
                f"Heal #{request.pk} proposed ({request.get_strategy_display()}, {signed(request.amount)}): "
                f"{reason.strip()}",
            )
    return proposed


def propose_correction(
    break_id: int, *, actor: User, entry_id: str, amount: int, reason: str, gateway: FirestoreGateway
) -> BalanceRequest:
    """Propose a correction of one malformed entry of the break's wallet, from its
    latest sighting, through reconciliation.corrections (maker-checker as a heal)."""
    require(actor, WORK, "propose corrections for breaks")
    brk = Break.objects.get(pk=break_id)
    if not brk.is_open:
        raise BreakRefused(f"break {brk.pk} is closed: nothing to correct")
    violation = latest_violations([brk]).get(brk.pk)
    if violation is None:
        raise BreakRefused("no run has seen this break yet")
    request = corrections.propose_correction(
        violation, actor=actor, entry_id=entry_id, amount=amount, reason=reason, gateway=gateway
    )
    with transaction.atomic():
        _note(
            brk,
            actor,
            BreakAction.PROPOSE_CORRECTION,
            f"{request.title} proposed: entry {request.supersedes} to count {signed(request.amount)} "
            f"points: {request.reason}",
        )
    return request


def latest_violations(breaks: Iterable[Break]) -> dict[int, Violation]:
    """{break pk: the violation of its latest sighting} (with its run): what a heal heals."""
    return {
        s.brk_id: s.violation
        for s in BreakSighting.objects.filter(brk__in=breaks, run=F("brk__last_run")).select_related(
            "violation__run"
        )
    }


# -- what a person may do with a break (pages ask before offering) -----------------

PERMISSIONS: dict[str, tuple[str, ...]] = {
    BreakAction.TAKE: (WORK,),
    BreakAction.ASSIGN: (WORK,),
    BreakAction.ACKNOWLEDGE: (WORK,),
    BreakAction.NOTE: (WORK,),
    BreakAction.PROPOSE_HEAL: (WORK, "reconciliation.propose_balancerequest"),
    BreakAction.PROPOSE_CORRECTION: (WORK, "reconciliation.propose_balancerequest"),
    BreakAction.ACCEPT: (ACCEPT,),
}
NO_DIFFERENCE = "the wallet's points are malformed, so there is no difference to accept; fix the data first"


def may(actor: User | AnonymousUser | None, action: str) -> bool:
    """Whether `actor`'s role does `action` (a BreakAction) to breaks at all."""
    return all(refusals.may(actor, permission) for permission in PERMISSIONS[action])  # never empty


def refusal(brk: Break, actor: User | AnonymousUser, action: str) -> str:
    """Why `actor` cannot do `action` (a BreakAction) to this break now, for a
    person; "" when they can. Read-only: the break page asks it so that it
    offers only what the actions above accept, and says why not otherwise
    (they still refuse on their own)."""
    if not may(actor, action):
        return "your role does not do this to breaks"
    if action == BreakAction.NOTE:
        return ""
    if not brk.is_open:
        return f"this break is closed ({brk.get_resolution_display().lower() or 'ended'})"
    if action == BreakAction.TAKE and brk.owner_id == actor.pk and brk.status == BreakStatus.ACKNOWLEDGED:
        return "it is yours already"
    if action == BreakAction.ACKNOWLEDGE:
        if brk.status == BreakStatus.ACKNOWLEDGED:
            return f"{'you' if brk.owner_id == actor.pk else brk.owner} acknowledged it already"
        return _someone_elses(brk, actor)
    if action == BreakAction.ACCEPT:
        if brk.delta is None:
            return NO_DIFFERENCE
        heal = _open_heals([brk.uid]).get(brk.uid)
        return _heal_open(heal) if heal else ""
    if action == BreakAction.PROPOSE_HEAL:
        event = freeze.current()
        if event is not None:
            return str(freeze.Frozen(event))
        violation = latest_violations([brk]).get(brk.pk)
        if violation is None:
            return "no run has seen it yet"
        return change_queries.heal_refusal(
            violation, change_queries.blocking_heals([violation]).get(violation.pk)
        )
    if action == BreakAction.PROPOSE_CORRECTION:
        event = freeze.current()
        if event is not None:
            return str(freeze.Frozen(event))
        return corrections.correction_refusal(latest_violations([brk]).get(brk.pk))
    return ""


def _someone_elses(brk: Break, actor) -> str:
    if brk.owner_id in (None, actor.pk):
        return ""
    return f"it is assigned to {brk.owner}: only its owner acknowledges it, or take it first"


def _open_heals(uids) -> dict[str, BalanceRequest]:
    """{uid: its open heal or correction}."""
    return {
        heal.uid: heal
        for heal in BalanceRequest.objects.filter(kind__in=REPAIR_KINDS, state__in=OPEN_STATES, uid__in=uids)
    }


def _heal_open(heal: BalanceRequest) -> str:
    what = heal.get_kind_display().lower()
    return (
        f"its wallet has {what} #{heal.pk} open ({heal.get_state_display().lower()}): decide the {what} first"
    )


def break_of(request: BalanceRequest) -> Break | None:
    """The break a heal or adjustment is about: the one its violation was a sighting
    of, else the open break of its wallet (an adjustment has no violation)."""
    if request.violation_id is not None:
        found = Break.objects.filter(sightings__violation_id=request.violation_id).first()
        if found is not None:
            return found
    return Break.objects.filter(uid=request.uid, status__in=OPEN_BREAK_STATES).order_by("-first_seen").first()


def heals_of(brk: Break) -> QuerySet:
    """The heals and corrections proposed for the break's sightings, latest first."""
    return BalanceRequest.objects.filter(violation__sighting__brk=brk).order_by("-created_at", "-id")


def _open_locked(break_ids: Iterable[int], doing: str) -> list[Break]:
    ids = sorted(set(break_ids))
    breaks = list(
        Break.objects.select_for_update(of=("self",))
        .select_related("owner")
        .filter(pk__in=ids)
        .order_by("pk")
    )
    if len(breaks) != len(ids):
        raise BreakRefused("some of the selected breaks no longer exist")
    closed = [b for b in breaks if not b.is_open]
    if closed:
        raise BreakRefused(
            f"{', '.join(f'break {b.pk} ({b.uid})' for b in closed)} closed: only open breaks are {doing}"
        )
    return breaks


def _transition(brk: Break, to: str) -> None:
    if to != brk.status and to not in BREAK_TRANSITIONS[brk.status]:
        raise BreakRefused(f"a {brk.status} break cannot become {to}")
    brk.status = to


def _note(brk: Break, actor, action: str, text: str) -> BreakNote:
    note = BreakNote.objects.create(brk=brk, author=actor, action=action, text=text)
    log.info("break %s", action, extra={"break_id": brk.pk, "uid": brk.uid, "actor": str(actor)})
    return note
