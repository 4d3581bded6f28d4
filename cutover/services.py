"""The cutover runbook: start, confirm each step in order, abort.

The admin pages and `manage.py cutover` call these and nothing else. Steps the
product performs (freeze, snapshot, reconcile, unfreeze) run here and their
outcome is the step's evidence; the manual ones (promote, switch webhooks,
monitor) record who confirmed what and when. A step is recorded with a
conditional update on its state, so two people confirming at once record it
once. The slow steps (snapshot, reconcile) run outside a transaction: a failed
snapshot keeps its own failed row, and the step stays pending.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from backfill.models import EventSource, ProviderEventDelivery
from cutover import record
from cutover.models import STEPS, Cutover, CutoverStatus, CutoverStep, StepKey, StepState
from observability.models import ACTIVE, Alert
from reconciliation.services import run_inline
from revassure import flags, freeze
from revassure.firestore import FirestoreGateway
from revassure.models import FreezeEvent
from revassure.refusals import Refused
from revassure.sealing import chain as sealing
from revassure.waiting import WaitingKind, announce
from snapshots import services as snapshots
from snapshots.models import Verification

RUN = "cutover.run_cutover"
ACCEPT = "cutover.accept_cutover_reconcile"
FIRST_DELIVERIES = 10
# Monitoring planned for longer than a week is a typo, and a number of minutes
# past what a date can add up to would break the cutover's page.
MAX_MONITOR_MINUTES = 7 * 24 * 60


class CutoverRefused(Refused):
    """The runbook refuses this now; the message says why and what to do instead."""


def _require(actor, permission: str, doing: str) -> None:
    if not actor.has_perm(permission):
        raise PermissionError(f"{actor} may not {doing}")


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def current() -> Cutover | None:
    """The cutover in progress, if any (there is at most one)."""
    return Cutover.objects.filter(status=CutoverStatus.IN_PROGRESS).first()


def awaiting_acceptance(user):
    """The reconcile step of the cutover in progress when its run found violations
    and nobody accepted them yet: what waits for this user, if they may accept
    (finance approvers), else nothing."""
    if not user.is_active or not user.has_perm(ACCEPT):
        return CutoverStep.objects.none()
    return CutoverStep.objects.filter(
        state=StepState.NEEDS_ACCEPTANCE, cutover__status=CutoverStatus.IN_PROGRESS
    ).select_related("cutover")


def steps(cutover: Cutover) -> list[CutoverStep]:
    return list(cutover.steps.select_related("confirmed_by", "accepted_by").order_by("number"))


def next_step(cutover: Cutover) -> CutoverStep | None:
    """The first step not done yet: the only one that can be confirmed."""
    return cutover.steps.exclude(state=StepState.DONE).order_by("number").first()


# -- the freeze it holds ------------------------------------------------------


def holder(cutover: Cutover) -> str:
    """The name a cutover holds the freeze under (revassure.freeze)."""
    return f"cutover:{cutover.pk}"


def freeze_hold(event) -> tuple[str, str] | None:
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


def step_by_key(cutover: Cutover, key: str) -> CutoverStep:
    if key not in StepKey.values:
        raise CutoverRefused(f"there is no step {key!r}; the steps are {', '.join(StepKey.values)}")
    return cutover.steps.get(key=key)


# -- starting -----------------------------------------------------------------


def start(*, actor, name: str, target: str, monitor_minutes: int = 120) -> Cutover:
    _require(actor, RUN, "start a cutover")
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


def confirmable(cutover: Cutover, key: str, *, actor) -> tuple[CutoverStep, bool]:
    """The step `key` if `actor` may confirm it now, and whether it waits for
    an acceptance; refuses a step out of order (naming the step that must come
    first), one already done, and one running in the workers."""
    cutover.refresh_from_db()
    if cutover.status != CutoverStatus.IN_PROGRESS:
        raise CutoverRefused(f"cutover {cutover.name} is {cutover.get_status_display().lower()}")
    step = step_by_key(cutover, key)
    waiting_for_acceptance = step.state == StepState.NEEDS_ACCEPTANCE
    if waiting_for_acceptance:
        _require(actor, ACCEPT, "accept a reconciliation with violations (finance approvers do)")
    else:
        _require(actor, RUN, "confirm cutover steps (ops do)")
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
    actor,
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
    performers: dict[str, Callable[..., tuple[dict, dict]]] = {
        StepKey.FREEZE: _freeze,
        StepKey.SNAPSHOT: _snapshot,
        StepKey.RECONCILE: _reconcile,
        StepKey.PROMOTE: _promote,
        StepKey.SWITCH_WEBHOOKS: _switch_webhooks,
        StepKey.MONITOR: _monitor,
        StepKey.UNFREEZE: _unfreeze,
    }
    evidence, values = performers[step.key](
        cutover, actor=actor, gateway=gateway, trigger=trigger, revision=revision.strip(), override=override
    )
    state = values.pop("state", StepState.DONE)
    return record_step(cutover, step, state=state, evidence=evidence, actor=actor, note=note, **values)


def record_step(
    cutover: Cutover,
    step: CutoverStep,
    *,
    state: str,
    evidence: dict,
    actor,
    note: str,
    source=StepState.PENDING,
    **values,
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


def _freeze(cutover: Cutover, *, actor, gateway, **_) -> tuple[dict, dict]:
    try:
        event = freeze.freeze(actor=actor, reason=f"cutover {cutover.name}", gateway=gateway)
        already = False
    except freeze.AlreadyInState as exc:
        assert exc.event is not None  # frozen already: by this event
        event, already = exc.event, True
    evidence = {
        "freeze_event_id": event.pk,
        "frozen_by": event.actor.get_username(),
        "frozen_at": _iso(event.created_at),
        "reason": event.reason,
        "already_frozen": already,
    }
    if already:
        evidence["said"] = "manual balance changes were already frozen; that freeze is recorded"
    return evidence, {}


def _snapshot(cutover: Cutover, *, actor, gateway, **_) -> tuple[dict, dict]:
    try:
        snapshot = snapshots.take(actor=actor, gateway=gateway)
    except PermissionError:
        raise
    except Exception as exc:
        raise CutoverRefused(f"the snapshot could not be taken: {exc}") from exc
    return snapshot_evidence(snapshot), {}


def snapshot_evidence(snapshot) -> dict:
    """What the snapshot step records of a taken snapshot; refused unless it verified."""
    if snapshot.verification != Verification.INTACT:
        raise CutoverRefused(
            f"snapshot {snapshot.pk} at {snapshot.path} did not verify "
            f"({snapshot.get_verification_display().lower()}); take another before going on"
        )
    return {
        "snapshot_id": snapshot.pk,
        "path": snapshot.path,
        "project": snapshot.project,
        "manifest_sha256": snapshot.manifest_sha256,
        "wallets": snapshot.wallets,
        "entries": snapshot.entries,
        "verification": snapshot.verification,
    }


def _reconcile(cutover: Cutover, *, actor, gateway, trigger, **_) -> tuple[dict, dict]:
    try:
        run = run_inline(actor=actor, trigger=trigger, gateway=gateway)
    except flags.FeatureDisabled as exc:
        raise CutoverRefused(f"the reconciliation cannot run: {exc}") from exc
    except Exception as exc:
        # The run is marked failed with the error on its own page.
        raise CutoverRefused(f"the reconciliation failed: {exc}; run this step again") from exc
    return reconcile_evidence(run, run_by=actor.get_username())


def reconcile_evidence(run, *, run_by: str) -> tuple[dict, dict]:
    """What the reconcile step records of a finished run, and the step's state:
    done when clean, waiting for a finance approver's acceptance otherwise;
    refused when the run did not complete."""
    if not run.is_finished or not run.checksum:
        raise CutoverRefused(f"reconciliation run {run.pk} did not complete: {run.error or run.status}")
    verdict = "violations" if run.violations_count else "clean"
    evidence = {
        "run_id": run.pk,
        "run_by": run_by,
        "status": run.status,
        "wallets_checked": run.wallets_checked,
        "violations": run.violations_count,
        "violations_by_kind": {"drift": run.drift_count, "malformed": run.malformed_count},
        "total_abs_drift": run.total_abs_drift,
        "liability_difference": run.liability_difference,
        "checksum": run.checksum,
        "verdict": verdict,
    }
    state = StepState.NEEDS_ACCEPTANCE if run.violations_count else StepState.DONE
    return evidence, {"state": state}


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


def _promote(cutover: Cutover, *, revision, **_) -> tuple[dict, dict]:
    if not revision:
        raise CutoverRefused("say which image or revision was promoted (its id is the evidence)")
    return {"revision": revision}, {}


def _switch_webhooks(cutover: Cutover, **_) -> tuple[dict, dict]:
    return {"switched_at": _iso(timezone.now())}, {}


def monitoring(cutover: Cutover, now=None) -> dict | None:
    """What the monitor step shows: the time left, open alerts, webhook outcomes
    since the switch and the first deliveries; None before the switch."""
    switch = cutover.steps.filter(key=StepKey.SWITCH_WEBHOOKS).first()
    if switch is None or switch.state != StepState.DONE:
        return None
    now = now or timezone.now()
    assert switch.confirmed_at is not None  # done: confirmed at a time
    # A cutover started before the bound was enforced may hold a larger number.
    ends_at = switch.confirmed_at + timedelta(minutes=min(cutover.monitor_minutes, MAX_MONITOR_MINUTES))
    deliveries = ProviderEventDelivery.objects.filter(
        source=EventSource.WEBHOOK, received_at__gte=switch.confirmed_at
    )
    alerts = Alert.objects.filter(state__in=ACTIVE).select_related("rule").order_by("started_at", "id")
    first = deliveries.order_by("received_at", "id")[:FIRST_DELIVERIES]
    return {
        "switched_at": _iso(switch.confirmed_at),
        "ends_at": _iso(ends_at),
        "seconds_left": max(0, int((ends_at - now).total_seconds())),
        "open_alerts": [
            {"id": a.pk, "rule": a.rule.name, "state": a.state, "summary": a.summary} for a in alerts
        ],
        "outcomes": dict(sorted(Counter(deliveries.values_list("status", flat=True)).items())),
        "first_deliveries": [
            {"id": d.pk, "event_id": d.event_id, "status": d.status, "received_at": _iso(d.received_at)}
            for d in first
        ],
    }


def _monitor(cutover: Cutover, *, override, **_) -> tuple[dict, dict]:
    seen = monitoring(cutover)
    assert seen is not None  # the switch, the step before, is done
    why_not = []
    if seen["seconds_left"]:
        why_not.append(f"the monitoring time has {_minutes(seen['seconds_left'])} left")
    if seen["open_alerts"]:
        why_not.append(f"{len(seen['open_alerts'])} alert(s) are open")
    override = override.strip()
    if why_not and not override:
        raise CutoverRefused(
            f"monitoring cannot be confirmed yet: {' and '.join(why_not)}; wait, or give an override reason"
        )
    evidence = {**seen, "overridden": bool(why_not), "overridden_because": why_not}
    return evidence, {"override_reason": override if why_not else ""}


def _minutes(seconds: int) -> str:
    minutes = -(-seconds // 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def _unfreeze(cutover: Cutover, *, actor, gateway, **_) -> tuple[dict, dict]:
    made = cutover.steps.get(key=StepKey.FREEZE).evidence
    if made.get("already_frozen"):
        # The freeze was someone else's before the cutover began: theirs to lift.
        return {
            "already_unfrozen": False,
            "left_frozen": True,
            "said": f"left frozen: freeze event {made.get('freeze_event_id')} was not the cutover's "
            f"({made.get('frozen_by')}: {made.get('reason')}); it is lifted by whoever froze",
        }, {}
    event: FreezeEvent | None
    try:
        event = freeze.unfreeze(
            actor=actor,
            reason=f"cutover {cutover.name} done",
            gateway=gateway,
            holder=holder(cutover),
            event_id=made.get("freeze_event_id"),
        )
        already = False
    except freeze.AlreadyInState as exc:
        event, already = exc.event, True
    except freeze.NotTheSameFreeze as exc:
        return {"already_unfrozen": False, "left_frozen": True, "said": f"left frozen: {exc}"}, {}
    evidence: dict[str, Any] = {"already_unfrozen": already}
    if event is not None:
        evidence.update(
            unfreeze_event_id=event.pk,
            unfrozen_by=event.actor.get_username(),
            unfrozen_at=_iso(event.created_at),
            reason=event.reason,
        )
    return evidence, {}


# -- aborting and sealing -----------------------------------------------------


def abort(
    cutover: Cutover,
    *,
    actor,
    reason: str,
    gateway: FirestoreGateway,
    unfreeze: bool = False,
    flags_off: list[str] | tuple[str, ...] = (),
) -> Cutover:
    """Abort with a reason; optionally unfreeze (only a freeze the cutover made)
    and turn feature flags off. Both are recorded, with what is left to do by hand."""
    _require(actor, RUN, "abort a cutover (ops do)")
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
            unfrozen, said = _roll_back_freeze(
                cutover, by_key[StepKey.FREEZE], actor=actor, reason=because, gateway=gateway
            )
            done.append(said)
        for name in flags_off:
            flags.set_flag(name, False, actor=actor, reason=because)
            done.append(f"feature flag {name} turned off")
        cutover.rollback = {"done": done, "by_hand": _left_by_hand(by_key, unfrozen=unfrozen)}
        cutover.abort_reason = reason
        cutover.aborted_by = actor
        _seal(cutover, status=CutoverStatus.ABORTED)
    return cutover


def _roll_back_freeze(
    cutover: Cutover, step: CutoverStep, *, actor, reason: str, gateway
) -> tuple[bool, str]:
    """Lift the freeze the cutover made, and only that one: (lifted, what happened)."""
    if step.state != StepState.DONE or step.evidence.get("already_frozen"):
        return False, "not unfrozen: the cutover did not freeze manual balance changes (left as they are)"
    made = step.evidence.get("freeze_event_id")
    try:
        event = freeze.unfreeze(
            actor=actor, reason=reason, gateway=gateway, holder=holder(cutover), event_id=made
        )
    except (freeze.AlreadyInState, freeze.NotTheSameFreeze) as exc:
        return False, f"not unfrozen: {exc}"
    return True, (
        f"manual balance changes unfrozen: the cutover's own freeze (event {made}) lifted by "
        f"unfreeze event {event.pk}"
    )


def _left_by_hand(by_key: dict, *, unfrozen: bool) -> list[str]:
    def done(key):
        return by_key[key].state == StepState.DONE

    todo = []
    if done(StepKey.SWITCH_WEBHOOKS):
        todo.append("point the PayNow webhooks back at the previous endpoint")
    if done(StepKey.PROMOTE):
        revision = by_key[StepKey.PROMOTE].evidence.get("revision")
        todo.append(f"roll the container back to the revision before {revision}")
    if done(StepKey.SNAPSHOT):
        evidence = by_key[StepKey.SNAPSHOT].evidence
        todo.append(
            f"if data must be restored: restore snapshot {evidence.get('snapshot_id')} "
            f"({evidence.get('path')}) "
            "on TEST first with `manage.py restore_snapshot`, check it, then decide (docs/cutover.md)"
        )
    if done(StepKey.FREEZE) and not unfrozen:
        todo.append("unfreeze manual balance changes when it is safe (`manage.py unfreeze --reason ...`)")
    return todo


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
