"""The cutover runbook: start, confirm each step in order, abort.

The admin pages and `manage.py cutover` call these to act (what they read of
the runbook is in cutover.runbook). Steps the product performs (freeze,
snapshot, reconcile, unfreeze) run first (cutover.steps) and their outcome is
the step's evidence; the manual ones (promote, switch webhooks, monitor)
record who confirmed what and when. A step is recorded with a conditional
update on its state, so two people confirming at once record it once. The
slow steps (snapshot, reconcile) run outside a transaction: a failed snapshot
keeps its own failed row, and the step stays pending.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from cutover import record
from cutover.models import STEPS, Cutover, CutoverStatus, CutoverStep, StepKey, StepState
from cutover.runbook import (
    ACCEPT,
    MAX_MONITOR_MINUTES,
    RUN,
    CutoverRefused,
    current,
    holder,
    next_step,
    step_by_key,
    steps,
)
from cutover.steps import left_by_hand, perform, roll_back_freeze
from revassure import flags
from revassure.firestore import FirestoreGateway
from revassure.models import FreezeEvent
from revassure.refusals import may, require
from revassure.sealing import chain as sealing
from revassure.waiting import WaitingKind, announce


def awaiting_acceptance(user: User | AnonymousUser) -> QuerySet[CutoverStep]:
    """The reconcile step of the cutover in progress when its run found violations
    and nobody accepted them yet: what waits for this user, if they may accept
    (finance approvers), else nothing."""
    if not may(user, ACCEPT):
        return CutoverStep.objects.none()
    return CutoverStep.objects.filter(
        state=StepState.NEEDS_ACCEPTANCE, cutover__status=CutoverStatus.IN_PROGRESS
    ).select_related("cutover")


# -- the freeze it holds ------------------------------------------------------


def freeze_hold(event: FreezeEvent) -> tuple[str, str] | None:
    """The cutover in progress holds the freeze from its freeze step on (its own
    freeze, or one it found on and relied on): only it lifts it, at its last
    step or when aborted. Registered with revassure.freeze by CutoverConfig."""
    cutover = current()
    if cutover is None or not cutover.steps.filter(key=StepKey.FREEZE, state=StepState.DONE).exists():
        return None
    return holder(cutover), (
        f"cutover {cutover.name} (started by {cutover.started_by} at "
        f"{cutover.started_at:%Y-%m-%d %H:%M} UTC) is in progress and holds the freeze of manual "
        "balance changes: it is lifted by the cutover's last step (unfreeze), or by aborting the "
        "cutover with unfreeze"
    )


# -- starting -----------------------------------------------------------------


def start(*, actor: User, name: str, target: str, monitor_minutes: int = 120) -> Cutover:
    require(actor, RUN, "start a cutover")
    name, target = name.strip(), target.strip()
    if not name or not target:
        raise CutoverRefused("a cutover needs a name and a target environment")
    if not 1 <= monitor_minutes <= MAX_MONITOR_MINUTES:
        raise CutoverRefused(
            f"the monitoring time must be from 1 to {MAX_MONITOR_MINUTES:,} minutes (a week), "
            f"not {monitor_minutes:,}"
        )
    running = current()
    if running is not None:
        raise CutoverRefused(
            f"cutover {running.name} is in progress (started by {running.started_by} at "
            f"{running.started_at:%Y-%m-%d %H:%M} UTC); finish or abort it first"
        )
    try:
        with transaction.atomic():
            cutover = Cutover.objects.create(
                name=name, target=target, monitor_minutes=monitor_minutes, started_by=actor
            )
            CutoverStep.objects.bulk_create(
                CutoverStep(cutover=cutover, number=number, key=key)
                for number, key in enumerate(STEPS, start=1)
            )
    except IntegrityError as exc:
        # Someone else started one between the check above and this insert.
        raise CutoverRefused(
            "another cutover was started at the same moment; finish or abort it first"
        ) from exc
    return cutover


# -- confirming ---------------------------------------------------------------


def confirmable(cutover: Cutover, key: str, *, actor: User) -> tuple[CutoverStep, bool]:
    """The step `key` if `actor` may confirm it now, and whether it waits for
    an acceptance; refuses a step out of order (naming the step that must come
    first), one already done, and one running in the workers."""
    cutover.refresh_from_db()
    if cutover.status != CutoverStatus.IN_PROGRESS:
        raise CutoverRefused(f"cutover {cutover.name} is {cutover.get_status_display().lower()}")
    step = step_by_key(cutover, key)
    waiting_for_acceptance = step.state == StepState.NEEDS_ACCEPTANCE
    if waiting_for_acceptance:
        require(actor, ACCEPT, "accept a reconciliation with violations (finance approvers do)")
    else:
        require(actor, RUN, "confirm cutover steps (ops do)")
    if step.state == StepState.RUNNING:
        raise CutoverRefused(
            f"step {step.number} ({step.get_key_display()}) is running in the workers; "
            "its page shows how far it has got"
        )
    if step.state == StepState.DONE:
        raise CutoverRefused(
            f"step {step.number} ({step.get_key_display()}) was already confirmed by "
            f"{step.confirmed_by} at {step.confirmed_at:%Y-%m-%d %H:%M:%S} UTC"
        )
    first = next_step(cutover)
    assert first is not None  # this step is not done
    if first.pk != step.pk:
        raise CutoverRefused(
            f"step {first.number} ({first.get_key_display()}) must be confirmed before "
            f"step {step.number} ({step.get_key_display()})"
        )
    return step, waiting_for_acceptance


def confirm(
    cutover: Cutover,
    key: str,
    *,
    actor: User,
    gateway: FirestoreGateway,
    trigger: str,
    note: str = "",
    revision: str = "",
    override: str = "",
    accept: str = "",
) -> CutoverStep:
    """Confirm step `key` (the product performs it first when it is one of its
    own); refuses a step out of order, naming the step that must come first.

    `trigger` is the reconciliation run's trigger (admin or command). `accept`
    is a finance approver's reason to continue past a reconciliation that found
    violations; `override` is the reason to end monitoring early or with alerts.
    """
    step, waiting_for_acceptance = confirmable(cutover, key, actor=actor)
    note = note.strip()
    if waiting_for_acceptance:
        return _accept(step, actor=actor, reason=accept, note=note)
    evidence, values = perform(
        cutover,
        step.key,
        actor=actor,
        gateway=gateway,
        trigger=trigger,
        revision=revision.strip(),
        override=override,
    )
    state = values.pop("state", StepState.DONE)
    return record_step(cutover, step, state=state, evidence=evidence, actor=actor, note=note, **values)


def record_step(
    cutover: Cutover,
    step: CutoverStep,
    *,
    state: str,
    evidence: dict,
    actor: User | None,
    note: str,
    source: str = StepState.PENDING,
    **values: Any,
) -> CutoverStep:
    """Record a step's outcome with a conditional update on its state (`source`):
    two people, or a person and a worker, record it once. Done seals the
    cutover at its last step; waiting for an acceptance tells the approvers."""
    now = timezone.now()
    with transaction.atomic():
        recorded = CutoverStep.objects.filter(
            pk=step.pk, state=source, cutover__status=CutoverStatus.IN_PROGRESS
        ).update(
            state=state,
            evidence=evidence,
            note=note,
            confirmed_by=actor if state == StepState.DONE else None,
            confirmed_at=now if state == StepState.DONE else None,
            **values,
        )
        if not recorded:
            raise CutoverRefused(
                f"step {step.number} ({step.get_key_display()}) was recorded by someone else"
            )
        if step.key == StepKey.UNFREEZE:
            _seal(cutover, status=CutoverStatus.FINISHED)
        if state == StepState.NEEDS_ACCEPTANCE:
            announce(WaitingKind.CUTOVER_ACCEPTANCE, step.pk)
    step.refresh_from_db()
    return step


def _accept(step: CutoverStep, *, actor, reason: str, note: str) -> CutoverStep:
    reason = reason.strip()
    if not reason:
        run = step.evidence.get("run_id")
        raise CutoverRefused(
            f"reconciliation run {run} found {step.evidence.get('violations')} violation(s): a finance "
            "approver must accept and continue with a reason, or ops abort the cutover"
        )
    now = timezone.now()
    recorded = CutoverStep.objects.filter(
        pk=step.pk, state=StepState.NEEDS_ACCEPTANCE, cutover__status=CutoverStatus.IN_PROGRESS
    ).update(
        state=StepState.DONE,
        accepted_by=actor,
        accepted_at=now,
        accept_reason=reason,
        confirmed_by=actor,
        confirmed_at=now,
        note=note or step.note,
    )
    if not recorded:
        raise CutoverRefused("the reconciliation was accepted by someone else")
    step.refresh_from_db()
    return step


# -- aborting and sealing -----------------------------------------------------


def abort(
    cutover: Cutover,
    *,
    actor: User,
    reason: str,
    gateway: FirestoreGateway,
    unfreeze: bool = False,
    flags_off: list[str] | tuple[str, ...] = (),
) -> Cutover:
    """Abort with a reason; optionally unfreeze (only a freeze the cutover made)
    and turn feature flags off. Both are recorded, with what is left to do by hand."""
    require(actor, RUN, "abort a cutover (ops do)")
    reason = reason.strip()
    if not reason:
        raise CutoverRefused("say why the cutover is aborted")
    unknown = sorted(set(flags_off) - set(flags.known_flags()))
    if unknown:
        raise CutoverRefused(
            f"unknown feature flag(s): {', '.join(unknown)}; known: {', '.join(flags.known_flags())}"
        )
    because = f"cutover {cutover.name} aborted: {reason}"
    with transaction.atomic():
        cutover = Cutover.objects.select_for_update().get(pk=cutover.pk)
        if cutover.status != CutoverStatus.IN_PROGRESS:
            raise CutoverRefused(f"cutover {cutover.name} is {cutover.get_status_display().lower()}")
        by_key = {step.key: step for step in steps(cutover)}
        done = []
        unfrozen = False
        if unfreeze:
            unfrozen, said = roll_back_freeze(
                cutover, by_key[StepKey.FREEZE], actor=actor, reason=because, gateway=gateway
            )
            done.append(said)
        for name in flags_off:
            flags.set_flag(name, False, actor=actor, reason=because)
            done.append(f"feature flag {name} turned off")
        cutover.rollback = {"done": done, "by_hand": left_by_hand(by_key, unfrozen=unfrozen)}
        cutover.abort_reason = reason
        cutover.aborted_by = actor
        _seal(cutover, status=CutoverStatus.ABORTED)
    return cutover


def _seal(cutover: Cutover, *, status: str) -> None:
    """Finish or abort: the record is built from the rows, hashed and stored
    once, in the next place of the chain of cutover records (revassure.sealing)."""
    sealed = sealing.seal(
        record.KIND,
        cutover.pk,
        status=status,
        checksum=record.seal_content,
        values={name: getattr(cutover, name) for name in ("abort_reason", "aborted_by", "rollback")},
    )
    if sealed is None:
        raise CutoverRefused(f"cutover {cutover.name} is no longer in progress")
    cutover.refresh_from_db()
