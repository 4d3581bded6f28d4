"""Replay of a JSON Lines export of provider events (or of finance's reversal
CSV, turned into such lines) as a tracked data migration.

Each line is stored raw as a delivery of the migration and applied by the same
rules as the webhook, in file order per wallet. Deferred reversals are retried
at the end of the run while that makes progress. A dry run plans instead
(backfill.planner) and writes nothing to Firestore.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from django.db import transaction

from backfill import intake, planner, run_requests, runs, services, uploads
from backfill.models import DataMigration, EventStatus, MigrationSource, ProviderEventDelivery
from revassure.firestore import FirestoreGateway
from revassure.policy import negative_balance_allowed

log = logging.getLogger(__name__)
CHECKPOINT_EVERY = 100  # lines stored, applied and saved together


def run_replay(
    migration: DataMigration,
    lines: Iterable[str],
    *,
    gateway: FirestoreGateway,
    deadline: float | None = None,
    lease: str | None = None,
) -> DataMigration:
    """Handle every line of the export; resumes after `migration.checkpoint` lines.

    A real run stops early, progress saved, when ops pause or cancel it, or,
    still running, at `deadline` (time.monotonic()) for a next task to go on.
    A dry run keeps its plan in memory, so it always runs to the end.
    `lease`: the claim its caller already holds (a worker's task); without it,
    the run claims the migration itself.
    """
    lease = lease or runs.claim(migration)
    if lease is None:
        return migration
    numbered = _numbered(lines, after=migration.checkpoint)

    def attempt() -> DataMigration | None:
        """The migration where it stopped (a plan made, or early), or None: all applied."""
        if migration.dry_run:
            return plan_numbered(migration, lease, numbered, gateway=gateway)
        deferred = _apply_lines(migration, lease, numbered, gateway=gateway, deadline=deadline)
        if deferred is None:
            migration.refresh_from_db()
            return migration  # stopped early; resuming continues from the checkpoint
        _retry_deferred(
            migration, lease, deferred, lambda pk: services.apply_delivery(pk, gateway=gateway).status
        )
        return None

    stopped = runs.held(migration, lease, attempt)
    if stopped is not None:
        return stopped
    migration = runs.complete(migration, lease, gateway=gateway)
    _check_bound_outcomes(migration)
    return migration


def plan_numbered(
    migration: DataMigration, lease: str, numbered: Iterable[tuple[int, bytes]], *, gateway: FirestoreGateway
) -> DataMigration:
    """A dry run: decide the numbered items in order (the deferred ones again at
    the end), keep the plan, its checksum and each item's outcome, complete.
    Raises as the real run does (its caller fails the migration)."""
    plan = planner.Plan(gateway, allow_negative=negative_balance_allowed())
    judged: dict[int, planner.Judged] = {}
    counts, deferred, last = planner.plan_lines(numbered, plan, judged=judged)
    with transaction.atomic():
        runs.save_progress(migration, lease, counts, checkpoint=last or migration.checkpoint)

    def again(item: tuple[int, bytes]) -> str:
        number, raw = item
        judged[number] = plan.judge(raw)
        return judged[number].outcome

    _retry_deferred(migration, lease, deferred, again)
    summary = plan.summary(DataMigration.objects.get(pk=migration.pk).outcomes())
    with transaction.atomic():
        planner.save_items(migration, judged)
        return runs.complete(
            migration, lease, gateway=gateway, plan=summary, plan_checksum=plan.checksum(summary)
        )


def verify_plan(
    plan_id: int,
    lines: Iterable[str],
    *,
    path: str,
    kind: str,
    gateway: FirestoreGateway,
    source: str = MigrationSource.COMMAND,
    name: str = "",
) -> DataMigration:
    """Plan the same file again, now; PlanMismatch unless it is exactly plan
    `plan_id`, and PlanNotApproved (before planning) while the plan waits for a
    second person. The new dry run, which matched."""
    planner.require_approved(plan_id)
    fresh = run_requests.start_replay(
        path=path, dry_run=True, kind=kind, source=source, name=name, checks=plan_id
    )
    fresh = run_replay(fresh, lines, gateway=gateway)
    planner.check_plan(plan_id, fresh)
    return fresh


def check_bound_plan(migration: DataMigration, lease: str, *, gateway: FirestoreGateway) -> bool:
    """Before the first line of an upload's run bound to a plan (ops pressed "Run
    for real, bound to this plan"): plan its file again now. True when it may
    run; otherwise the run is failed with the reason, nothing written.
    Checked once: a run that already started goes on from its checkpoint."""

    def replan(plan_id: int) -> DataMigration:
        with uploads.stored_lines(migration) as lines:
            return verify_plan(
                plan_id,
                lines,
                path=migration.parameters["path"],
                kind=migration.kind,
                gateway=gateway,
                source=migration.source,
                name=migration.parameters.get("name", ""),
            )

    return bound_check(migration, lease, replan)


def bound_check(migration: DataMigration, lease: str, replan: Callable[[int], DataMigration]) -> bool:
    """check_bound_plan, `replan(plan id)` planning what the run names again now
    (PlanMismatch unless it is exactly the plan, OSError for a file gone)."""
    plan_id = migration.parameters.get("plan")
    if plan_id is None or "plan_check" in migration.parameters:
        return True
    try:
        fresh = replan(plan_id)
    except (planner.PlanMismatch, OSError) as exc:
        why = str(exc) if isinstance(exc, planner.PlanMismatch) else "its uploaded file is no longer kept"
        runs.fail(migration, lease, exc, error=f"refused, nothing written: {why}")
        migration.refresh_from_db()
        log.warning("bound run refused", extra={"migration_id": migration.pk, "plan": plan_id})
        return False
    migration.parameters["plan_check"] = fresh.pk
    DataMigration.objects.filter(pk=migration.pk).update(parameters=migration.parameters)
    return True


def bind_to_plan(migration: DataMigration, plan_id: int) -> None:
    """Record on a real run the plan it was checked against (shown, and compared after)."""
    migration.parameters["plan"] = plan_id
    migration.save(update_fields=["parameters"])


def _check_bound_outcomes(migration: DataMigration) -> None:
    """A run bound to a plan ends with the plan's outcomes; if anything came
    between the check and the run (someone else's write), say so on the run."""
    plan_id = migration.parameters.get("plan")
    if plan_id is None or migration.status != "completed":
        return
    planned = DataMigration.objects.filter(pk=plan_id).values_list("plan", flat=True).first() or {}
    expected = planned.get("outcomes", {})
    if expected and expected != migration.outcomes():
        error = f"outcomes differ from plan {plan_id}: planned {expected}, done {migration.outcomes()}"
        DataMigration.objects.filter(pk=migration.pk).update(error=error)
        migration.refresh_from_db()
        log.error("bound run differs from its plan", extra={"migration_id": migration.pk, "plan": plan_id})


def _numbered(lines: Iterable[str], *, after: int) -> Iterator[tuple[int, bytes]]:
    """(line number from 1, raw line) of each non-blank line past the checkpoint."""
    for number, line in enumerate(lines, start=1):
        if number > after and line.strip():
            yield number, line.rstrip("\n").encode()


@dataclass
class _Batch:
    last_line: int
    deliveries: list[ProviderEventDelivery]
    stages: list[tuple[list, list]]
    commits: Future  # the first stage's payments, committed in the pipeline's thread


def _apply_lines(
    migration, lease: str, numbered: Iterator[tuple[int, bytes]], *, gateway, deadline
) -> list[int] | None:
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
        for lines_batch in _chunked(numbered, CHECKPOINT_EVERY):
            if previous is not None and (_past(deadline) or not runs.still_mine(migration, lease)):
                stopped = True
                break
            deliveries = intake.store_deliveries(lines_batch, migration=migration, stored=stored)
            stages = services.stages(deliveries)
            landed = _landed(previous, gateway=gateway, known=known)
            commits = committer.submit(
                contextvars.copy_context().run,
                services.commit_payments,
                stages[0][0],
                gateway=gateway,
                known=known,
            )
            _save_batch(migration, lease, previous, landed, deferred)
            previous = _Batch(lines_batch[-1][0], deliveries, stages, commits)
        _save_batch(migration, lease, previous, _landed(previous, gateway=gateway, known=known), deferred)
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


def _landed(batch: _Batch | None, *, gateway, known: dict) -> list[tuple[list, dict, str]]:
    """Finish a batch stage by stage: wait for the first stage's payments, apply
    its other events one by one, then each later stage's payments and others.
    (payments, outcomes, failure) of each stage, for saving."""
    if batch is None:
        return []
    results = []
    for n, (payments, others) in enumerate(batch.stages):
        if n == 0:
            outcomes, failure = batch.commits.result()
        else:
            outcomes, failure = services.commit_payments(payments, gateway=gateway, known=known)
        results.append((payments, outcomes, failure))
        services.apply_one_by_one(others, gateway=gateway)
    return results


def _save_batch(migration, lease: str, batch: _Batch | None, landed: list, deferred: list[int]) -> None:
    if batch is None:
        return
    with transaction.atomic():
        for payments, outcomes, failure in landed:
            services.save_payment_outcomes(payments, outcomes, failure)
        handled: dict[str, int] = defaultdict(int)
        for delivery in batch.deliveries:
            handled[delivery.status] += 1
            if delivery.status == EventStatus.DEFERRED:
                deferred.append(delivery.pk)
        runs.save_progress(migration, lease, handled, checkpoint=batch.last_line)


def _retry_deferred(migration, lease: str, deferred: list, consider) -> None:
    """Reversals that arrived before their purchase: try again while any succeeds."""
    while deferred:
        still, moved = [], defaultdict[str, int](int)
        for item in deferred:
            outcome = consider(item)
            if outcome == EventStatus.DEFERRED:
                still.append(item)
            else:
                moved[outcome] += 1
        if not moved:
            return
        with transaction.atomic():
            runs.move_counts(migration, lease, moved)
        deferred = still


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline
