"""Replay of a JSON Lines export of provider events, as a tracked data migration.

Each line is stored raw as a delivery of the migration and applied through the
same code path as the webhook. Deferred reversals are retried at the end of the
run while that makes progress. A dry run reads Firestore, writes nothing there,
and plans: per wallet the points before and after, the entries it would create,
the outcome counts, and a checksum of all that.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from backfill import events, services
from backfill.models import OUTCOMES, DataMigration, EventStatus, MigrationStatus, ProviderEventDelivery
from backfill.rules import WalletView, decide
from revassure import flags
from revassure.firestore import FirestoreGateway
from revassure.logs import on_commit

log = logging.getLogger(__name__)
CHECKPOINT_EVERY = 100  # file replays save progress, stored replays check for a pause, this often


FLAG = "backfill_enabled"
REPLAYABLE = (EventStatus.RECEIVED, EventStatus.DEFERRED, EventStatus.FAILED)


def request_file_replay(upload, *, dry_run: bool, actor) -> DataMigration:
    """Keep an uploaded export where the workers can read it and queue its replay."""
    from backfill import tasks

    flags.require_enabled(FLAG)
    folder = settings.BACKFILL_UPLOAD_DIR
    folder.mkdir(parents=True, exist_ok=True)
    with transaction.atomic():
        migration = DataMigration.objects.create(
            kind="replay_file", parameters={"name": upload.name}, dry_run=dry_run, started_by=actor
        )
        path = folder / f"migration-{migration.pk}.jsonl"
        with path.open("wb") as target:
            for piece in upload.chunks():
                target.write(piece)
        migration.parameters["path"] = str(path)
        migration.save(update_fields=["parameters"])
        on_commit(lambda: tasks.enqueue_migration(migration.pk))
    return migration


class PlanMismatch(Exception):
    pass


def check_plan(plan_id: int, lines: Iterable[str], *, gateway: FirestoreGateway) -> None:
    """Plan the same file again, now; refuse unless it is exactly the approved plan.

    A changed world (an entry that landed since, a wallet that moved) gives a
    different plan, hence a different checksum.
    """
    approved = DataMigration.objects.filter(
        pk=plan_id, dry_run=True, status=MigrationStatus.COMPLETED
    ).first()
    if approved is None:
        raise PlanMismatch(f"migration {plan_id} is not a completed dry run")
    fresh = start_replay(path=approved.parameters.get("path", ""), dry_run=True, kind=approved.kind)
    fresh = run_replay(fresh, lines, gateway=gateway, allow_negative=settings.BACKFILL_ALLOW_NEGATIVE_BALANCE)
    if fresh.plan_checksum != approved.plan_checksum:
        raise PlanMismatch(
            f"the run would differ from plan {plan_id} (checksum {approved.plan_checksum[:12]}…, "
            f"now {fresh.plan_checksum[:12]}…; see dry run {fresh.pk})"
        )


def start_replay(*, path: str, dry_run: bool, actor=None, kind: str = "replay_file") -> DataMigration:
    flags.require_enabled(FLAG)
    return DataMigration.objects.create(
        kind=kind, parameters={"path": path}, dry_run=dry_run, started_by=actor
    )


def request_stored_replay(
    *, actor=None, include_quarantined: bool = False, since=None, until=None
) -> DataMigration:
    """A migration that re-applies stored deliveries not applied yet (received,
    deferred, failed; quarantined too after a fix), optionally in a time window;
    a worker runs it."""
    from backfill import tasks

    flags.require_enabled(FLAG)
    statuses = [*REPLAYABLE, *([EventStatus.QUARANTINED] if include_quarantined else [])]
    parameters = {
        "statuses": statuses,
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
    }
    with transaction.atomic():
        migration = DataMigration.objects.create(
            kind="replay_stored", parameters=parameters, started_by=actor
        )
        on_commit(lambda: tasks.enqueue_migration(migration.pk))
    return migration


def run_stored_replay(
    migration: DataMigration, *, gateway: FirestoreGateway, deadline: float | None = None
) -> DataMigration:
    """Re-apply the stored deliveries the migration names, in id order, from its checkpoint.

    Stops early, progress saved, when someone pauses or cancels it, or, still
    running, at `deadline` (time.monotonic()) for a next task to go on.
    """
    if not _claim(migration):
        return migration
    params = migration.parameters
    items = ProviderEventDelivery.objects.filter(status__in=params["statuses"], pk__gt=migration.checkpoint)
    if params.get("since"):
        items = items.filter(received_at__gte=params["since"])
    if params.get("until"):
        items = items.filter(received_at__lt=params["until"])
    if "expected" not in params:
        params["expected"] = items.count()
        DataMigration.objects.filter(pk=migration.pk).update(parameters=params)
    try:
        for handled, delivery_id in enumerate(
            items.order_by("pk").values_list("pk", flat=True).iterator(), 1
        ):
            # The outcome, the counters and the checkpoint commit together: a
            # worker killed at any point leaves nothing counted twice or missed,
            # and the Firestore side is idempotent, so nothing is applied twice.
            with transaction.atomic():
                delivery = ProviderEventDelivery.objects.select_for_update().get(pk=delivery_id)
                if delivery.status == EventStatus.QUARANTINED:
                    services.requeue(delivery)
                status = services.apply_delivery(delivery_id, gateway=gateway).status
                _save_progress(migration, {status: 1}, checkpoint=delivery_id)
            if _past(deadline) or (handled % CHECKPOINT_EVERY == 0 and _stopped(migration)):
                migration.refresh_from_db()
                return migration
    except Exception as exc:
        DataMigration.objects.filter(pk=migration.pk).update(
            status=MigrationStatus.FAILED, error=f"{type(exc).__name__}: {exc}", finished_at=timezone.now()
        )
        raise
    DataMigration.objects.filter(pk=migration.pk, status=MigrationStatus.RUNNING).update(
        status=MigrationStatus.COMPLETED, finished_at=timezone.now()
    )
    migration.refresh_from_db()
    _publish(migration, gateway)
    return migration


def resume_abandoned(older_than) -> int:
    """Hand running migrations whose worker went silent to a worker again (a
    broker like Redis does not redeliver the task of a killed worker): stored
    replays, and replays of files uploaded in the admin (kept where workers
    read them). A command's run is left to whoever ran it: its file may be on
    another machine."""
    from backfill import tasks

    cutoff = timezone.now() - older_than
    workers_can_run = Q(kind="replay_stored") | Q(kind="replay_file", parameters__has_key="name")
    abandoned = list(
        DataMigration.objects.filter(
            workers_can_run, status=MigrationStatus.RUNNING, heartbeat_at__lt=cutoff
        ).values_list("pk", flat=True)
    )
    for migration_id in abandoned:
        on_commit(lambda migration_id=migration_id: tasks.enqueue_migration(migration_id))
    return len(abandoned)


def _claim(migration: DataMigration) -> bool:
    """Take a migration to run: a pending one, or a running one whose worker died
    (django-q delivers a task again only after its timeout killed the first
    attempt). Paused, cancelled and finished migrations are left alone, so a
    late redelivery never restarts what ops stopped."""
    now = timezone.now()
    claimed = DataMigration.objects.filter(
        pk=migration.pk, status__in=[MigrationStatus.PENDING, MigrationStatus.RUNNING]
    ).update(status=MigrationStatus.RUNNING, started_at=migration.started_at or now, heartbeat_at=now)
    migration.refresh_from_db()
    return claimed == 1


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def _stopped(migration: DataMigration) -> bool:
    status = DataMigration.objects.filter(pk=migration.pk).values_list("status", flat=True).first()
    return status in (MigrationStatus.PAUSED, MigrationStatus.CANCELLED)


def set_status(migration_id: int, action: str, *, actor) -> DataMigration:
    """Ops pause, resume or cancel a migration; resuming hands it to a worker again."""
    from backfill import tasks

    if not actor.has_perm("backfill.change_datamigration"):
        raise PermissionError(f"{actor} may not control data migrations")
    allowed = {
        "pause": ([MigrationStatus.PENDING, MigrationStatus.RUNNING], MigrationStatus.PAUSED),
        "resume": ([MigrationStatus.PAUSED, MigrationStatus.FAILED], MigrationStatus.PENDING),
        "cancel": (
            [MigrationStatus.PENDING, MigrationStatus.RUNNING, MigrationStatus.PAUSED],
            MigrationStatus.CANCELLED,
        ),
    }
    sources, target = allowed[action]
    with transaction.atomic():
        if not DataMigration.objects.filter(pk=migration_id, status__in=sources).update(status=target):
            raise ValueError(f"migration {migration_id} cannot {action} now")
        if action == "resume":
            on_commit(lambda: tasks.enqueue_migration(migration_id))
    return DataMigration.objects.get(pk=migration_id)


def run_replay(
    migration: DataMigration,
    lines: Iterable[str],
    *,
    gateway: FirestoreGateway,
    allow_negative: bool,
    deadline: float | None = None,
) -> DataMigration:
    """Handle every line of the export; resumes after `migration.checkpoint` lines.

    A real run stops early, progress saved, when ops pause or cancel it, or,
    still running, at `deadline` (time.monotonic()) for a next task to go on.
    A dry run keeps its plan in memory, so it always runs to the end.
    """
    if not _claim(migration):
        return migration
    plan = _Plan(gateway) if migration.dry_run else None
    try:
        if plan is not None:
            deferred = _plan_lines(migration, lines, plan, allow_negative=allow_negative)
        else:
            deferred = _apply_lines(migration, lines, gateway=gateway, deadline=deadline)
            if deferred is None:
                migration.refresh_from_db()
                return migration  # stopped early; resuming continues from the checkpoint
        _retry_deferred(migration, deferred, plan, gateway=gateway, allow_negative=allow_negative)
    except Exception as exc:
        DataMigration.objects.filter(pk=migration.pk).update(
            status=MigrationStatus.FAILED, error=f"{type(exc).__name__}: {exc}", finished_at=timezone.now()
        )
        raise
    finish = {"status": MigrationStatus.COMPLETED, "finished_at": timezone.now()}
    if plan is not None:
        finish["plan"] = plan.summary(DataMigration.objects.get(pk=migration.pk).outcomes())
        finish["plan_checksum"] = plan.checksum(finish["plan"])
    DataMigration.objects.filter(pk=migration.pk).update(**finish)
    migration.refresh_from_db()
    if not migration.dry_run:
        _publish(migration, gateway)
    log.info("replay finished", extra={"migration_id": migration.pk, **migration.outcomes()})
    return migration


def _numbered(lines: Iterable[str], *, after: int) -> Iterator[tuple[int, bytes]]:
    """(line number from 1, raw line) of each non-blank line past the checkpoint."""
    for number, line in enumerate(lines, start=1):
        if number > after and line.strip():
            yield number, line.rstrip("\n").encode()


def _plan_lines(migration, lines, plan: _Plan, *, allow_negative: bool) -> list[bytes]:
    counts: dict[str, int] = defaultdict(int)
    deferred, last = [], migration.checkpoint
    for number, raw in _numbered(lines, after=migration.checkpoint):
        outcome = plan.consider(raw, allow_negative=allow_negative)
        counts[outcome] += 1
        last = number
        if outcome == EventStatus.DEFERRED:
            deferred.append(raw)
    _save_progress(migration, counts, checkpoint=last)
    return deferred


@dataclass
class _Batch:
    last_line: int
    deliveries: list[ProviderEventDelivery]
    payments: list
    others: list
    commits: Future


def _apply_lines(migration, lines, *, gateway: FirestoreGateway, deadline: float | None) -> list[int] | None:
    """Store and apply the lines, CHECKPOINT_EVERY at a time: the deferred
    deliveries' ids, or None when it stopped early (paused, cancelled, deadline).

    A two-stage pipeline: while one batch's payments are committed to Firestore
    (in a thread of its own, which touches no database), the next batch is
    stored and the last one's outcomes are saved. Firestore sees the batches
    strictly one after another, as without the pipeline; a batch's outcomes,
    the counters and the checkpoint are saved in one transaction. Deliveries
    an interrupted attempt stored past its checkpoint are taken up again, not
    stored twice, so a resumed run counts each line once.
    """
    stored = {d.line: d for d in migration.deliveries.filter(line__gt=migration.checkpoint)}
    deferred = list(
        migration.deliveries.filter(line__lte=migration.checkpoint, status=EventStatus.DEFERRED)
        .order_by("line")
        .values_list("pk", flat=True)
    )
    known: dict = {}  # wallet versions this run committed, reused by its later batches
    previous: _Batch | None = None
    stopped = False
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="replay-commits") as committer:
        for lines_batch in _chunked(_numbered(lines, after=migration.checkpoint), CHECKPOINT_EVERY):
            if previous is not None and (_past(deadline) or _stopped(migration)):
                stopped = True
                break
            deliveries = services.store_deliveries(lines_batch, migration=migration, stored=stored)
            payments, others = services.split_payments(deliveries)
            outcomes = _landed(previous, gateway=gateway)
            commits = committer.submit(
                contextvars.copy_context().run,
                services.commit_payments,
                payments,
                gateway=gateway,
                known=known,
            )
            _save_batch(migration, previous, outcomes, deferred)
            previous = _Batch(lines_batch[-1][0], deliveries, payments, others, commits)
        _save_batch(migration, previous, _landed(previous, gateway=gateway), deferred)
    return None if stopped else deferred


def _chunked(items: Iterator, size: int) -> Iterator[list]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _landed(batch: _Batch | None, *, gateway: FirestoreGateway) -> tuple[dict, str]:
    """Wait for a batch's payment commits, then apply its other events one by one."""
    if batch is None:
        return {}, ""
    outcomes = batch.commits.result()
    services.apply_one_by_one(batch.others, gateway=gateway)
    return outcomes


def _save_batch(migration, batch: _Batch | None, outcomes: tuple[dict, str], deferred: list[int]) -> None:
    if batch is None:
        return
    with transaction.atomic():
        services.save_payment_outcomes(batch.payments, *outcomes)
        handled: dict[str, int] = defaultdict(int)
        for delivery in batch.deliveries:
            handled[delivery.status] += 1
            if delivery.status == EventStatus.DEFERRED:
                deferred.append(delivery.pk)
        _save_progress(migration, handled, checkpoint=batch.last_line)


def _save_progress(migration: DataMigration, counts: dict[str, int], *, checkpoint: int) -> None:
    handled = sum(counts.values())
    DataMigration.objects.filter(pk=migration.pk).update(
        heartbeat_at=timezone.now(),
        total=F("total") + handled,
        processed=F("processed") + handled,
        checkpoint=checkpoint,
        **{name: F(name) + counts.get(name, 0) for name in OUTCOMES},
    )


def _retry_deferred(migration, deferred, plan, *, gateway, allow_negative) -> None:
    """Reversals that arrived before their purchase: try again while any succeeds."""
    while deferred:
        still, moved = [], defaultdict(int)
        for item in deferred:
            if plan is not None:
                outcome = plan.consider(item, allow_negative=allow_negative)
            else:
                outcome = services.apply_delivery(item, gateway=gateway).status
            if outcome == EventStatus.DEFERRED:
                still.append(item)
            else:
                moved[outcome] += 1
        if not moved:
            return
        with transaction.atomic():
            DataMigration.objects.filter(pk=migration.pk).update(
                deferred=F("deferred") - sum(moved.values()),
                **{name: F(name) + n for name, n in moved.items()},
            )
        deferred = still


def _publish(migration: DataMigration, gateway: FirestoreGateway) -> None:
    """Mirror a finished migration to Firestore `dataMigrations/{id}`. A failure
    is logged, not raised: the migration is complete in the database, which is
    what the admin shows."""
    try:
        gateway.put_migration(str(migration.pk), mirror(migration))
    except Exception as exc:
        log.error("data migration mirror failed", extra={"migration_id": migration.pk, "error": repr(exc)})


def mirror(migration: DataMigration) -> dict:
    return {
        "kind": migration.kind,
        "status": migration.status,
        "dryRun": migration.dry_run,
        "parameters": migration.parameters,
        "total": migration.total,
        **migration.outcomes(),
        "checkpoint": migration.checkpoint,
        "startedAt": migration.started_at,
        "finishedAt": migration.finished_at,
    }


class _Plan:
    """A dry run's view of the world: Firestore as read, plus what it would write."""

    def __init__(self, gateway: FirestoreGateway):
        self.gateway = gateway
        self.entries: dict[str, dict[str, dict]] = defaultdict(dict)  # uid -> entry id -> entry
        self.points_before: dict[str, int] = {}
        self.delta: dict[str, int] = defaultdict(int)

    def consider(self, raw: bytes, *, allow_negative: bool) -> str:
        try:
            event = events.parse(raw)
        except events.Unusable:
            return EventStatus.QUARANTINED
        view = self._view(event)
        decision = decide(event, view, allow_negative=allow_negative)
        if decision.status == "applied":
            self.points_before.setdefault(event.user_id, view.points - self.delta[event.user_id])
            self.entries[event.user_id][event.entry_id] = decision.entry
            self.delta[event.user_id] += event.amount
        return decision.status

    def _view(self, event) -> WalletView:
        view = self.gateway.event_view(event)
        planned = self.entries.get(event.user_id, {})
        if not view.wallet_exists or type(view.points) is not int:
            return view
        original = view.original_amount
        if original is None and event.original_entry_id in planned:
            original = planned[event.original_entry_id]["amount"]
        reversed_planned = sum(
            e["amount"] for e in planned.values() if e.get("reverses") == event.original_entry_id
        )
        return replace(
            view,
            entry_exists=view.entry_exists or event.entry_id in planned,
            points=view.points + self.delta.get(event.user_id, 0),
            original_amount=original,
            reversed_before=view.reversed_before + reversed_planned,
        )

    def summary(self, outcomes: dict[str, int]) -> dict:
        wallets = {
            uid: {
                "points_before": self.points_before[uid],
                "points_after": self.points_before[uid] + self.delta[uid],
                "entries": {entry_id: entry["amount"] for entry_id, entry in sorted(entries.items())},
            }
            for uid, entries in sorted(self.entries.items())
        }
        return {"outcomes": outcomes, "wallets": wallets, "points_moved": sum(self.delta.values())}

    @staticmethod
    def checksum(plan: dict) -> str:
        return hashlib.sha256(json.dumps(plan, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
