"""Snapshots as the back office keeps them: rows in the database beside the files.

The entry points (the commands, the admin, the cutover runbook) call these:

- `take(out_dir, actor=, gateway=)`: take a snapshot here and now (or complete
  an interrupted one in the same directory), verify it, record it;
- `request_snapshot(actor=)`: the same in a worker (the admin's button);
  a worker takes it under a lease, and the minute's sweep
  (`resume_abandoned()`) hands it to another worker once that lease lapses;
- `verify(path)`: check a snapshot from its files alone;
- `verify_snapshot(snapshot)`: the same, recorded on its row;
- `restore(path, project=, replace=, actor=)`: load a snapshot into an allowed
  non-production project, recorded.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q
from django.dispatch import Signal
from django.utils import timezone
from django_q.tasks import async_task

from revassure import dbclock, leases
from revassure.firestore import FirestoreError, FirestoreGateway, get_gateway
from revassure.firestore.managed_export import ManagedExportUnavailable
from revassure.logs import on_commit
from revassure.refusals import Refused, require
from snapshots import places, writer
from snapshots import restore as restoring
from snapshots.models import TRANSITIONS, Restore, Snapshot, SnapshotStatus, Verification
from snapshots.verify import Result
from snapshots.verify import verify as verify_files

log = logging.getLogger(__name__)
# Sent once a snapshot has completed or failed (snapshot_id=...).
snapshot_finished = Signal()

PERMISSION = "snapshots.take_snapshot"
TAKE_TASK = "snapshots.tasks.take"
VIOLATIONS_KEPT = 200  # on the row, for the admin; the count is always whole

__all__ = ["Result", "request_snapshot", "restore", "run", "take", "take_again", "verify", "verify_snapshot"]


class SnapshotBusy(Refused):
    """Another worker or process is taking this snapshot."""


class SnapshotTakenOver(SnapshotBusy):
    """This worker's lease lapsed and another worker took the snapshot over."""


def require_permission(actor: User | None) -> None:
    """A person needs the permission; None is the system (a command on the server)."""
    require(actor, PERMISSION, "take snapshots", system_may=True)


def default_directory(project: str) -> str:
    """A new place under SNAPSHOT_DIR (a directory, or gs://bucket/prefix)."""
    return places.inside(settings.SNAPSHOT_DIR, f"{project}-{timezone.now():%Y%m%dT%H%M%SZ}")


def transition(
    snapshot_id: int,
    to: SnapshotStatus,
    *,
    source: SnapshotStatus | None = None,
    held_by: str | None = None,
    **values: Any,
) -> bool:
    """Move a snapshot to `to` if TRANSITIONS allows it from where it is (or from
    `source` only, when given; while worker `held_by` holds it, when given): a
    conditional update, True when it moved."""
    allowed = [status for status, targets in TRANSITIONS.items() if to in targets]
    if source is not None:
        allowed = [status for status in allowed if status == source]
    rows = Snapshot.objects.filter(pk=snapshot_id, status__in=allowed)
    if held_by is not None:
        rows = rows.filter(worker=held_by)
    return rows.update(status=to, **values) == 1


# -- taking --------------------------------------------------------------------


def request_snapshot(*, actor: User | None, out_dir: str | Path | None = None) -> Snapshot:
    """A snapshot of the configured project, taken by a worker (the admin's button)."""
    require_permission(actor)
    project = settings.GOOGLE_CLOUD_PROJECT
    path = places.normalized(out_dir or default_directory(project))
    with transaction.atomic():
        snapshot = Snapshot.objects.create(project=project, path=path, started_by=actor)
        on_commit(lambda: async_task(TAKE_TASK, snapshot.pk))
    log.info("snapshot requested", extra={"snapshot_id": snapshot.pk})
    return snapshot


def take_again(snapshot: Snapshot, *, actor: User | None) -> Snapshot:
    """Queue a failed snapshot again: a worker carries on after its last finished file."""
    require_permission(actor)
    with transaction.atomic():
        if transition(snapshot.pk, SnapshotStatus.PENDING, source=SnapshotStatus.FAILED, error=""):
            on_commit(lambda: async_task(TAKE_TASK, snapshot.pk))
    snapshot.refresh_from_db()
    return snapshot


def take(
    out_dir: str | Path | None = None,
    *,
    actor: User | None,
    gateway: FirestoreGateway,
    wallets_per_part: int = writer.WALLETS_PER_PART,
) -> Snapshot:
    """Take a snapshot of the gateway's project into `out_dir` here and now (by
    default a new place under SNAPSHOT_DIR), verify it and record it; the
    finished row. `out_dir` is a directory or gs://bucket/prefix (places.py).
    A place holding an interrupted snapshot is completed (its row, if it has
    one, is picked up). Raises when it cannot be taken, with the row marked failed."""
    require_permission(actor)
    path = places.normalized(out_dir or default_directory(gateway.project))
    snapshot, _ = Snapshot.objects.get_or_create(
        path=path, defaults={"project": gateway.project, "started_by": actor}
    )
    if snapshot.status == SnapshotStatus.COMPLETED:
        raise writer.SnapshotRefused(f"{path} already holds snapshot {snapshot.pk}; choose another directory")
    if snapshot.status == SnapshotStatus.RUNNING:
        if writer.busy(places.staging(path) if places.is_remote(path) else Path(path)):
            raise SnapshotBusy(f"snapshot {snapshot.pk} is being taken by another process")
        # Its process is gone (it held the directory's lock while it lived).
        transition(snapshot.pk, SnapshotStatus.FAILED, source=SnapshotStatus.RUNNING, error="interrupted")
    return run(snapshot.pk, gateway=gateway, wallets_per_part=wallets_per_part)


def run(
    snapshot_id: int,
    *,
    gateway: FirestoreGateway,
    deadline: float | None = None,
    wallets_per_part: int = writer.WALLETS_PER_PART,
) -> Snapshot:
    """Take the snapshot a row describes (pending, or failed and taken again).

    Stops after the file in hand once `deadline` (time.monotonic()) has passed,
    leaving the row pending: taking it again carries on (tasks.take does).
    """
    snapshot = Snapshot.objects.get(pk=snapshot_id)
    if snapshot.project != gateway.project:
        raise ValueError(f"snapshot {snapshot_id} is of project {snapshot.project}, not {gateway.project}")
    remote = places.is_remote(snapshot.path)
    staging = places.staging(snapshot.path) if remote else Path(snapshot.path)
    if writer.busy(staging):
        # A process of this machine still writes it (its lease lapsed in a long
        # pause): the sweep hands it out again once that process is gone.
        raise SnapshotBusy(f"snapshot {snapshot_id} is being written by another process of this machine")
    worker = leases.holder()
    lease = settings.SNAPSHOT_LEASE_SECONDS
    if not transition(
        snapshot_id,
        SnapshotStatus.RUNNING,
        started_at=snapshot.started_at or timezone.now(),
        worker=worker,
        lease_until=dbclock.ahead(lease),
    ):
        raise SnapshotBusy(
            f"snapshot {snapshot_id} is {snapshot.get_status_display().lower()}, not waiting to run"
        )
    held = Snapshot.objects.filter(pk=snapshot_id, status=SnapshotStatus.RUNNING, worker=worker)
    try:
        Snapshot.objects.filter(pk=snapshot_id).update(wallets_expected=gateway.count_wallets(), error="")
        with leases.Heartbeat(lambda: held.update(lease_until=dbclock.ahead(lease)) == 1, lease) as beat:

            def progress(wallets_done: int) -> None:
                if beat.lost or not held.update(wallets_done=wallets_done, lease_until=dbclock.ahead(lease)):
                    raise SnapshotTakenOver(f"snapshot {snapshot_id} was taken over by another worker")

            outcome = writer.take(
                staging,
                gateway=gateway,
                wallets_per_part=wallets_per_part,
                deadline=deadline,
                on_progress=progress,
                mirror=places.Bucket(snapshot.path) if remote else None,
            )
    except SnapshotTakenOver:
        # This worker was taken for dead (its lease lapsed): the other one finishes it.
        log.warning("snapshot taken over by another worker", extra={"snapshot_id": snapshot_id})
        return Snapshot.objects.get(pk=snapshot_id)
    except Exception as exc:
        transition(snapshot_id, SnapshotStatus.FAILED, held_by=worker, error=readable(exc), lease_until=None)
        snapshot_finished.send(sender=Snapshot, snapshot_id=snapshot_id)
        if isinstance(exc, FirestoreError):
            # Firestore out of reach or refusing: what it said is the whole story.
            log.error("snapshot failed", extra={"snapshot_id": snapshot_id, "error": readable(exc)})
        else:
            log.exception("snapshot failed", extra={"snapshot_id": snapshot_id})
        raise
    if outcome.started_over:
        log.warning(
            "snapshot started over", extra={"snapshot_id": snapshot_id, "reason": outcome.started_over}
        )
    if not outcome.finished:
        transition(snapshot_id, SnapshotStatus.PENDING, held_by=worker)
        return Snapshot.objects.get(pk=snapshot_id)
    manifest = outcome.manifest
    assert manifest is not None  # finished: written
    if not held.update(
        **{name: manifest[name] for name in ("seconds", "wallets", "entries", "documents")},
        points_total=manifest["points_total"],
        ledger_total=manifest["ledger_total"],
        wallets_done=manifest["wallets"],
        manifest_sha256=outcome.manifest_sha256,
        manifest=manifest,
        lease_until=dbclock.ahead(lease),
    ):
        log.warning("snapshot taken over by another worker", extra={"snapshot_id": snapshot_id})
        return Snapshot.objects.get(pk=snapshot_id)
    snapshot = verify_snapshot(Snapshot.objects.get(pk=snapshot_id))
    _start_managed_export(snapshot, gateway, manifest["read_time"])
    transition(
        snapshot_id, SnapshotStatus.COMPLETED, held_by=worker, finished_at=timezone.now(), lease_until=None
    )
    log.info("snapshot completed", extra={"snapshot_id": snapshot_id, "wallets": manifest["wallets"]})
    snapshot_finished.send(sender=Snapshot, snapshot_id=snapshot_id)
    return Snapshot.objects.get(pk=snapshot_id)


def resume_abandoned() -> int:
    """Every minute: snapshots whose worker was lost go to a worker again. A
    running one whose lease lapsed (its worker died: the Redis broker never
    hands its task out again) is set back to pending; a pending one whose task
    may have been lost with a machine (it has waited longer than a lease) is
    queued again. The worker carries on after the last file in its directory
    (on another machine's disk: from the start). A duplicate finds it taken."""
    lease = settings.SNAPSHOT_LEASE_SECONDS
    lapsed = Snapshot.objects.filter(leases.free(), status=SnapshotStatus.RUNNING)
    for snapshot_id in lapsed.values_list("pk", flat=True):
        if transition(snapshot_id, SnapshotStatus.PENDING, source=SnapshotStatus.RUNNING):
            log.warning("snapshot's worker was lost; handed out again", extra={"snapshot_id": snapshot_id})
    waiting = Snapshot.objects.filter(status=SnapshotStatus.PENDING).filter(
        leases.lapsed() | Q(lease_until__isnull=True, created_at__lt=dbclock.ago(lease))
    )
    found = list(waiting.values_list("pk", flat=True))
    for snapshot_id in found:
        async_task(TAKE_TASK, snapshot_id)
    return len(found)


def _start_managed_export(snapshot: Snapshot, gateway: FirestoreGateway, read_time: str) -> None:
    """Beside the files, Firestore's own export to SNAPSHOT_BUCKET, when one is set."""
    bucket = settings.SNAPSHOT_BUCKET
    if not bucket:
        return
    operation, state = "", ""
    try:
        started = gateway.start_managed_export(
            bucket, snapshot_time=datetime.fromisoformat(read_time.replace("Z", "+00:00"))
        )
        operation, state = started.operation, started.state
    except ManagedExportUnavailable as exc:
        state = f"Not taken: {exc}."
    except FirestoreError as exc:
        state = f"Could not start: {exc}"
        log.error("managed export did not start", extra={"snapshot_id": snapshot.pk})
    Snapshot.objects.filter(pk=snapshot.pk).update(
        managed_export_operation=operation, managed_export_state=state[:300]
    )


def refresh_managed_export(snapshot: Snapshot, *, gateway: FirestoreGateway) -> str:
    """Ask Firestore how the snapshot's managed export is doing; recorded and returned."""
    if not snapshot.managed_export_operation:
        return snapshot.managed_export_state
    state = gateway.managed_export_state(snapshot.managed_export_operation)
    Snapshot.objects.filter(pk=snapshot.pk).update(managed_export_state=state[:300])
    return state


# -- verifying -------------------------------------------------------------------


def verify(path: str | Path, *, manifest_sha256: str | None = None) -> Result:
    """Check a snapshot from its files alone (see snapshots/verify.py), in a
    directory or in Cloud Storage (gs://bucket/prefix): `ok` says whether it is
    intact; `violations` are wallets whose points differ from their ledger
    (findings about the data, not damage)."""
    with places.readable(path) as directory:
        return verify_files(directory, manifest_sha256=manifest_sha256)


def verify_snapshot(snapshot: Snapshot) -> Snapshot:
    """Verify a recorded snapshot's files (against the manifest SHA-256 recorded
    when it was taken) and record what was found."""
    result = verify(snapshot.path, manifest_sha256=snapshot.manifest_sha256 or None)
    Snapshot.objects.filter(pk=snapshot.pk).update(
        verification=Verification.INTACT if result.ok else Verification.CORRUPT,
        verified_at=timezone.now(),
        verification_errors=result.errors[:100],
        violations_count=len(result.violations),
        violations=[{**v.as_json(), "reason": v.reason} for v in result.violations[:VIOLATIONS_KEPT]],
    )
    snapshot.refresh_from_db()
    return snapshot


# -- restoring -------------------------------------------------------------------


def restore(path: str | Path, *, project: str, replace: bool = False, actor: User | None = None) -> Restore:
    """Load the snapshot at `path` into `project` (see snapshots/restore.py for
    the guards); recorded whether it is done or refused. Raises RestoreRefused
    (nothing written) or the error that stopped it."""
    require_permission(actor)
    record = Restore.objects.create(
        path=places.normalized(path), project=project, replace=replace, started_by=actor
    )
    refusal = restoring.refusal_for_project(project)
    try:
        if refusal:
            # Checked before a gateway is even made for the project.
            raise restoring.RestoreRefused(refusal)
        started = time.monotonic()
        with places.readable(path) as directory:
            loaded = restoring.load(directory, gateway=get_gateway(project), replace=replace)
    except restoring.RestoreRefused as exc:
        Restore.objects.filter(pk=record.pk).update(refused=True, error=str(exc), finished_at=timezone.now())
        raise
    except Exception as exc:
        Restore.objects.filter(pk=record.pk).update(error=readable(exc), finished_at=timezone.now())
        raise
    Restore.objects.filter(pk=record.pk).update(
        deleted=loaded.deleted, written=loaded.written, finished_at=timezone.now()
    )
    log.info(
        "snapshot restored",
        extra={
            "project": project,
            "written": loaded.written,
            "seconds": round(time.monotonic() - started, 1),
        },
    )
    record.refresh_from_db()
    return record


def readable(exc: Exception) -> str:
    """An error as one line for a person: Firestore's own words for its errors
    (a retry deadline passed, a refusal), else the exception's text."""
    if isinstance(exc, FirestoreError):
        text = f"Firestore: {exc}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())
