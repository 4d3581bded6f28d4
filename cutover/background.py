"""The cutover's slow steps in the workers: the snapshot and the reconciliation.

From the cutover's page, confirming the snapshot or the reconcile step asks
the workers for it (a snapshot, or a run cut into chunks) and marks the step
running; the page shows how far it has got and refreshes itself. When the
snapshot or the run ends, the step is recorded as the inline path would
record it: done (or, for a run with violations, waiting for a finance
approver), or back to pending with what went wrong, to be run again. The
ending is noticed at once (the snapshot's and the run's `finished` signals)
and again whenever the page or `manage.py cutover` looks, so a missed signal
only delays it. `manage.py cutover confirm` still runs the steps in its own
process and waits.
"""

from __future__ import annotations

import logging

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import transaction

from cutover.models import Cutover, CutoverStatus, CutoverStep, StepKey, StepState
from cutover.runbook import CutoverRefused
from cutover.services import confirmable, record_step
from cutover.steps import reconcile_evidence, snapshot_evidence
from reconciliation.models import ReconciliationRun, RunStatus
from reconciliation.services import request_run
from revassure import flags
from snapshots import services as snapshots
from snapshots.models import Snapshot, SnapshotStatus

log = logging.getLogger(__name__)

IN_WORKERS = (StepKey.SNAPSHOT, StepKey.RECONCILE)


def start(cutover: Cutover, key: str, *, actor: User, trigger: str, note: str = "") -> CutoverStep:
    """Ask the workers for step `key` (snapshot or reconcile) and mark it running;
    refused as confirming it would be (out of order, done, not allowed)."""
    step, waiting = confirmable(cutover, key, actor=actor)
    if waiting or step.key not in IN_WORKERS:
        raise CutoverRefused(f"step {step.number} ({step.get_key_display()}) is not one the workers run")
    started = {"started_by": actor.get_username(), "started_by_id": actor.pk}
    with transaction.atomic():
        if step.key == StepKey.SNAPSHOT:
            snapshot = snapshots.request_snapshot(actor=actor)
            evidence = {"snapshot_id": snapshot.pk, **started}
        else:
            try:
                run = request_run(actor=actor, trigger=trigger)
            except flags.FeatureDisabled as exc:
                raise CutoverRefused(f"the reconciliation cannot run: {exc}") from exc
            evidence = {"run_id": run.pk, **started}
        # Rolls the request back with it when someone else started the step first.
        return record_step(
            cutover, step, state=StepState.RUNNING, evidence=evidence, actor=actor, note=note.strip()
        )


def progress(step: CutoverStep) -> dict | None:
    """How far a running step has got: what it is waiting for, done and total
    (wallets of a snapshot, chunks of a run; total None until known)."""
    if step.state != StepState.RUNNING:
        return None
    if step.key == StepKey.SNAPSHOT:
        snapshot = Snapshot.objects.filter(pk=step.evidence.get("snapshot_id")).first()
        if snapshot is None:
            return None
        return {
            "what": f"snapshot {snapshot.pk}",
            "status": snapshot.get_status_display(),
            "done": snapshot.wallets_done,
            "total": snapshot.wallets_expected,
            "unit": "wallets",
            "waiting": snapshot.status == SnapshotStatus.PENDING and not snapshot.wallets_done,
        }
    run = ReconciliationRun.objects.filter(pk=step.evidence.get("run_id")).first()
    if run is None:
        return None
    return {
        "what": f"reconciliation run {run.pk}",
        "status": run.get_status_display(),
        "done": run.chunks_done,
        "total": run.chunks_total,
        "unit": "chunks",
        "waiting": run.status == RunStatus.PENDING,
    }


def settle(cutover: Cutover) -> CutoverStep | None:
    """Record the running step of the cutover if its snapshot or run has ended;
    the step (None when none runs). Safe to call any number of times, from
    anywhere: the step is recorded once."""
    step = cutover.steps.filter(state=StepState.RUNNING).first()
    if step is None or cutover.status != CutoverStatus.IN_PROGRESS:
        return step
    ended = _ended(step)
    if ended is None:
        return step
    evidence, state, failure = ended
    starter = get_user_model().objects.filter(pk=step.evidence.get("started_by_id")).first()
    started = {k: step.evidence[k] for k in ("started_by", "started_by_id") if k in step.evidence}
    if failure:
        # Back to pending, saying what happened: the step is offered again.
        evidence = {**started, "last_attempt": failure}
        state = StepState.PENDING
    try:
        return record_step(
            cutover,
            step,
            state=state,
            evidence={**evidence, **started},
            actor=starter,
            note=step.note,
            source=StepState.RUNNING,
        )
    except CutoverRefused:
        step.refresh_from_db()  # recorded by another caller meanwhile
        return step


def settle_current(**_: object) -> None:
    """A signal's receiver: settle the cutover in progress, never failing the
    worker that sent it (the page and the command settle it again)."""
    try:
        cutover = Cutover.objects.filter(status=CutoverStatus.IN_PROGRESS).first()
        if cutover is not None:
            settle(cutover)
    except Exception:
        log.exception("cutover step not settled")


def _ended(step: CutoverStep) -> tuple[dict, str, str] | None:
    """(evidence, state, failure) once the step's snapshot or run has ended;
    failure is "" when it succeeded. None while it goes on."""
    if step.key == StepKey.SNAPSHOT:
        snapshot = Snapshot.objects.filter(pk=step.evidence.get("snapshot_id")).first()
        if snapshot is None:
            return {}, StepState.PENDING, f"snapshot {step.evidence.get('snapshot_id')} is gone"
        if snapshot.status == SnapshotStatus.FAILED:
            return {}, StepState.PENDING, f"snapshot {snapshot.pk} failed: {snapshot.error}"
        if snapshot.status != SnapshotStatus.COMPLETED:
            return None
        try:
            return snapshot_evidence(snapshot), StepState.DONE, ""
        except CutoverRefused as exc:
            return {}, StepState.PENDING, str(exc)
    run = ReconciliationRun.objects.filter(pk=step.evidence.get("run_id")).first()
    if run is None:
        return {}, StepState.PENDING, f"reconciliation run {step.evidence.get('run_id')} is gone"
    if not run.is_finished:
        return None
    try:
        evidence, values = reconcile_evidence(run, run_by=step.evidence.get("started_by", ""))
    except CutoverRefused as exc:
        return {}, StepState.PENDING, str(exc)
    return evidence, values["state"], ""
