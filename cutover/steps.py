"""What the product does at each step of a cutover, and the evidence it
records: freezing, taking a snapshot that verifies, reconciling, the manual
steps' confirmations (promote, switch the webhooks), the monitoring after the
switch, unfreezing; and, when a cutover is aborted, lifting its own freeze
and what is left to undo by hand. cutover.services calls these (`perform`)
and records their outcome; the workers' path (cutover.background) records a
snapshot's or a run's evidence the same way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import User
from django.utils import timezone

from backfill.models import EventSource, ProviderEventDelivery
from cutover.models import Cutover, CutoverStep, StepKey, StepState
from cutover.runbook import MAX_MONITOR_MINUTES, CutoverRefused, holder
from observability.models import ACTIVE, Alert
from reconciliation.models import ReconciliationRun
from reconciliation.services import run_inline
from revassure import flags, freeze
from revassure.firestore import FirestoreGateway
from revassure.models import FreezeEvent
from snapshots import services as snapshots
from snapshots.models import Snapshot, Verification

FIRST_DELIVERIES = 10


def _iso(value) -> str | None:
    return value.isoformat() if value else None


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


def snapshot_evidence(snapshot: Snapshot) -> dict:
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


def reconcile_evidence(run: ReconciliationRun, *, run_by: str) -> tuple[dict, dict]:
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


def _promote(cutover: Cutover, *, revision, **_) -> tuple[dict, dict]:
    if not revision:
        raise CutoverRefused("say which image or revision was promoted (its id is the evidence)")
    return {"revision": revision}, {}


def _switch_webhooks(cutover: Cutover, **_) -> tuple[dict, dict]:
    return {"switched_at": _iso(timezone.now())}, {}


def monitoring(cutover: Cutover, now: datetime | None = None) -> dict | None:
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


PERFORMERS: dict[str, Callable[..., tuple[dict, dict]]] = {
    StepKey.FREEZE: _freeze,
    StepKey.SNAPSHOT: _snapshot,
    StepKey.RECONCILE: _reconcile,
    StepKey.PROMOTE: _promote,
    StepKey.SWITCH_WEBHOOKS: _switch_webhooks,
    StepKey.MONITOR: _monitor,
    StepKey.UNFREEZE: _unfreeze,
}


def perform(cutover: Cutover, key: str, **given: Any) -> tuple[dict, dict]:
    """Do step `key` (or take the confirmation of a manual one): its evidence,
    and the values its row records (its state when not done)."""
    return PERFORMERS[key](cutover, **given)


# -- undoing on abort ---------------------------------------------------------


def roll_back_freeze(
    cutover: Cutover, step: CutoverStep, *, actor: User, reason: str, gateway: FirestoreGateway
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


def left_by_hand(by_key: dict, *, unfrozen: bool) -> list[str]:
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
