"""Reconciliation: check `wallet.points == sum(ledger.amount)` for every wallet.

One code path, whoever triggers it (the command, the admin button, the daily
schedule, the job API):

    request_run()   create a pending run and hand it to the workers, or
    run_inline()    create a run and execute it in this process;
    execute_run()   choose the run's instant T0 (instant.plan_reads), stream
                    the wallets as of T0 and cut them into chunks;
    process_chunk() aggregate each wallet's ledger as of T0, re-check
                    candidates live in a transaction, classify and store
                    confirmed violations (with what they were at T0);
    reports.seal_run() once the last chunk is in, then breaks.track_run().

Reading and judging the wallets themselves is reconciliation/wallet_checks.py.

The listing and each chunk are held under a lease (revassure/leases.py): work
a dead machine held, or had taken from the broker, is handed to another
worker by the minute's sweep (reconciliation/recovery.py).

See docs/reconciliation.md for the consistency argument and the costs.
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from datetime import date

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import F
from django.dispatch import Signal
from django.utils import timezone
from django_q.tasks import async_task

from reconciliation import breaks, instant, reports, wallet_checks
from reconciliation.models import (
    ReadMode,
    ReconciliationChunk,
    ReconciliationRun,
    RunStatus,
    RunTrigger,
    Violation,
)
from revassure import dbclock, flags, leases
from revassure.firestore import FirestoreGateway, LedgerTotals
from revassure.logs import get_correlation_id, on_commit
from revassure.refusals import require

log = logging.getLogger(__name__)
# Sent once a run is sealed or has failed (run_id=...), by whichever process ended it.
run_finished = Signal()

FLAG = "reconciliation_enabled"
START_TASK = "reconciliation.tasks.start_run"
CHUNK_TASK = "reconciliation.tasks.check_chunk"
# An inline run keeps this many chunks' aggregations queued beyond the one it
# is finishing (memory: a few chunks of uids and totals).
CHUNKS_AHEAD = 2


class RunNotStartable(Exception):
    pass


# -- starting runs -----------------------------------------------------------


def _create_run(
    *, actor, trigger: str, uids: list[str] | None, scheduled_for: date | None = None
) -> ReconciliationRun:
    flags.require_enabled(FLAG)
    require(actor, "reconciliation.run_reconciliation", "start reconciliation runs", system_may=True)
    scope = sorted(set(uids or []))
    validate_uids(scope)
    return ReconciliationRun.objects.create(
        trigger=trigger,
        requested_by=actor,
        scope_uids=scope,
        scheduled_for=scheduled_for,
        correlation_id=get_correlation_id() or "",
    )


def validate_uids(uids: list[str]) -> None:
    """Wallet uids as Firestore document ids: non-empty, no '/', no control characters."""
    if any(
        not isinstance(uid, str) or not uid or "/" in uid or any(ord(c) < 0x20 for c in uid) for uid in uids
    ):
        raise ValueError("a wallet uid must be a non-empty string without '/' or control characters")


def request_run(*, actor: User | None, trigger: str, uids: list[str] | None = None) -> ReconciliationRun:
    """Create a pending run and enqueue it for the workers once the row is committed."""
    with transaction.atomic():
        run = _create_run(actor=actor, trigger=trigger, uids=uids)
        on_commit(lambda: enqueue_start(run.pk))
    log.info("reconciliation run requested", extra={"run_id": run.pk, "trigger": trigger})
    return run


def request_daily_run(day: date) -> ReconciliationRun | None:
    """The daily run of `day` (UTC), requested once: None when it was requested
    already (the schedule's task and the sweep that found it missing may both
    ask; the day is claimed by a unique key)."""
    try:
        with transaction.atomic():
            run = _create_run(actor=None, trigger=RunTrigger.SCHEDULE, uids=None, scheduled_for=day)
            on_commit(lambda: enqueue_start(run.pk))
    except IntegrityError:
        log.info("the daily run was requested already", extra={"day": day.isoformat()})
        return None
    log.info("daily reconciliation run requested", extra={"run_id": run.pk, "day": day.isoformat()})
    return run


def run_inline(
    *, actor: User | None, trigger: str, gateway: FirestoreGateway, uids: list[str] | None = None
) -> ReconciliationRun:
    """Create a run and execute it here, chunk after chunk; returns the finished run."""
    run = _create_run(actor=actor, trigger=trigger, uids=uids)
    execute_run(run.pk, gateway=gateway, inline=True)
    run.refresh_from_db()
    return run


def enqueue_start(run_id: int) -> None:
    async_task(START_TASK, run_id, task_name=f"reconcile-run-{run_id}")


def enqueue_chunk(chunk_id: int) -> None:
    async_task(CHUNK_TASK, chunk_id, task_name=f"reconcile-chunk-{chunk_id}")


# -- executing runs ----------------------------------------------------------


def execute_run(
    run_id: int,
    *,
    gateway: FirestoreGateway,
    inline: bool,
    enqueue_chunk: Callable[[int], object] | None = None,
) -> None:
    """Stream the run's wallets into chunks and process them.

    `inline` processes each chunk in this process as soon as it is cut (the
    wallet stream keeps flowing in a background thread meanwhile); otherwise
    each chunk is stored and handed to `enqueue_chunk(chunk_id)` so that any
    number of workers share the run.

    The listing (and, inline, the checking) is held under a lease, renewed
    while it goes on: a pending run is started; a run whose lister was lost (its
    lease lapsed) is taken over from the last chunk cut, at the same T0 (the
    same wallets); anything else (a duplicate delivery, a live lister) is left
    alone.
    """
    token = _claim_listing(run_id)
    if token is None:
        log.info("reconciliation run not waiting for a lister; nothing to do", extra={"run_id": run_id})
        return
    run = ReconciliationRun.objects.get(pk=run_id)
    last = run.chunks.order_by("-seq").first()
    if last is not None:
        log.warning(
            "reconciliation run's lister was lost: listing taken over",
            extra={"run_id": run_id, "after_chunk": last.seq},
        )
    else:
        log.info("reconciliation run started", extra={"run_id": run_id, "inline": inline})
    lease = settings.RECONCILE_LEASE_SECONDS
    listing = ReconciliationRun.objects.filter(
        pk=run_id, lister=token, status=RunStatus.RUNNING, chunks_total__isnull=True
    )
    try:
        with leases.Heartbeat(lambda: listing.update(lease_until=dbclock.ahead(lease)) == 1, lease):
            _list_and_check(run, last, token, gateway=gateway, inline=inline, enqueue_chunk=enqueue_chunk)
    except Exception as exc:
        fail_run(run_id, exc)
        raise
    seal_if_complete(run_id, gateway)


def _list_and_check(run, last, token: str, *, gateway: FirestoreGateway, inline: bool, enqueue_chunk) -> None:
    """Cut the run's wallets into chunks after `last` (the last chunk cut, if any)
    while the listing is this worker's; hand each out, or check it here (inline)."""
    run_id = run.pk
    if not run.read_mode:
        run = _plan_reads(run, gateway)
    seq, ahead = (last.seq if last else 0), deque[tuple[int, Future[dict[str, LedgerTotals]]]]()
    after = last.wallets[-1][0] if last and last.wallets else None
    chunks = wallet_checks.wallet_chunks(
        run.scope_uids, gateway, read_time=run.read_time, ramp=inline, after=after
    )
    for wallets in chunks:
        seq += 1
        chunk = _cut_chunk(run, seq, wallets, token, queued=not inline)
        if chunk is None:
            log.warning("run's listing taken over by another worker; stopping", extra={"run_id": run_id})
            return
        if not inline:
            on_commit(lambda chunk_id=chunk.pk: enqueue_chunk(chunk_id))
            continue
        # Queue this chunk's aggregations before finishing the ones before it:
        # re-checking a chunk's candidates waits behind the aggregations
        # queued in Firestore, which stays busy meanwhile.
        ahead.append((chunk.pk, wallet_checks.start_aggregation(wallets, gateway, run.read_time)))
        if len(ahead) > CHUNKS_AHEAD:
            chunk_id, totals = ahead.popleft()
            process_chunk(chunk_id, gateway=gateway, totals=totals.result())
    while ahead:
        chunk_id, totals = ahead.popleft()
        process_chunk(chunk_id, gateway=gateway, totals=totals.result())
    ReconciliationRun.objects.filter(pk=run_id, lister=token).update(chunks_total=seq, lease_until=None)


def _claim_listing(run_id: int) -> str | None:
    """Take the run's listing: a pending run, or a running one whose lister's
    lease lapsed before it had cut every chunk. The claim's token, or None."""
    token = uuid.uuid4().hex
    lease = dbclock.ahead(settings.RECONCILE_LEASE_SECONDS)
    started = ReconciliationRun.objects.filter(pk=run_id, status=RunStatus.PENDING).update(
        status=RunStatus.RUNNING, started_at=timezone.now(), lister=token, lease_until=lease
    )
    if started:
        return token
    lost = ReconciliationRun.objects.filter(
        leases.free(), pk=run_id, status=RunStatus.RUNNING, chunks_total__isnull=True
    )
    return token if lost.update(lister=token, lease_until=lease) else None


def _cut_chunk(run: ReconciliationRun, seq: int, wallets: list, token: str, *, queued: bool):
    """Store the next chunk while the listing is still this worker's (renewing
    its lease); None once another worker has taken the listing over."""
    renewed = ReconciliationRun.objects.filter(pk=run.pk, lister=token, status=RunStatus.RUNNING).update(
        lease_until=dbclock.ahead(settings.RECONCILE_LEASE_SECONDS)
    )
    if not renewed:
        return None
    try:
        with transaction.atomic():
            return ReconciliationChunk.objects.create(
                run=run, seq=seq, wallets=wallets, queued_at=dbclock.now() if queued else None
            )
    except IntegrityError:  # the worker that took over cut it first
        return None


def _plan_reads(run: ReconciliationRun, gateway: FirestoreGateway) -> ReconciliationRun:
    """Choose and record, before anything is read, whether the run reads at T0 or
    live (and why): on the row, where every chunk's worker finds it."""
    plan = instant.plan_reads(run, gateway)
    ReconciliationRun.objects.filter(pk=run.pk).update(
        read_mode=plan.mode, read_time=plan.read_time, read_mode_reason=plan.reason
    )
    if plan.mode == ReadMode.LIVE:
        log.warning("reconciliation run reads live", extra={"run_id": run.pk, "reason": plan.reason})
    else:
        assert plan.read_time is not None  # reading at one instant: T0 is chosen
        log.info(
            "reconciliation run reads at one instant",
            extra={"run_id": run.pk, "read_time": plan.read_time.isoformat(), "estimate": plan.reason},
        )
    run.read_mode, run.read_time, run.read_mode_reason = plan.mode, plan.read_time, plan.reason
    return run


def process_chunk(
    chunk_id: int, *, gateway: FirestoreGateway, totals: dict[str, LedgerTotals] | None = None
) -> None:
    """Check one chunk of wallets and add its findings to the run. Counted once.

    The chunk is taken under a lease first: while its worker lives, another
    delivery of the chunk leaves it alone; once the lease lapses (the worker
    died), the sweep hands it to another worker. Only reads happen before the
    final database transaction, so a chunk is simply checked again; the `done`
    flag, claimed in the same transaction as the counters, makes sure it is
    counted once, whichever worker finishes first.
    """
    chunk = ReconciliationChunk.objects.select_related("run").filter(pk=chunk_id).first()
    if chunk is None or chunk.done or chunk.run.status != RunStatus.RUNNING:
        return  # a redelivery: the chunk was counted (and dropped at the seal) already
    worker = leases.holder()
    taken = ReconciliationChunk.objects.filter(leases.free(), pk=chunk_id, done=False).update(
        worker=worker, lease_until=dbclock.ahead(settings.RECONCILE_LEASE_SECONDS)
    )
    if not taken:
        return  # another worker is checking it
    run_id = chunk.run_id
    lease = settings.RECONCILE_LEASE_SECONDS
    mine = ReconciliationChunk.objects.filter(pk=chunk_id, worker=worker, done=False)
    try:
        with leases.Heartbeat(lambda: mine.update(lease_until=dbclock.ahead(lease)) == 1, lease):
            findings = wallet_checks.check_wallets(
                chunk.wallets, gateway=gateway, totals=totals, read_time=chunk.run.read_time
            )
    except Exception as exc:
        fail_run(run_id, exc)
        raise
    with transaction.atomic():
        claimed = ReconciliationChunk.objects.filter(pk=chunk_id, done=False).update(
            done=True, cleared=findings.cleared, worker=worker, lease_until=None
        )
        if claimed != 1:
            return
        Violation.objects.bulk_create(
            Violation(run_id=run_id, **violation) for violation in findings.violations
        )
        ReconciliationRun.objects.filter(pk=run_id).update(
            chunks_done=F("chunks_done") + 1,
            wallets_checked=F("wallets_checked") + findings.wallets_checked,
            violations_count=F("violations_count") + len(findings.violations),
            drift_count=F("drift_count") + findings.drift_count,
            malformed_count=F("malformed_count") + findings.malformed_count,
            total_abs_drift=F("total_abs_drift") + findings.total_abs_drift,
            total_wallet_points=F("total_wallet_points") + findings.total_wallet_points,
            total_ledger_sum=F("total_ledger_sum") + findings.total_ledger_sum,
        )
    seal_if_complete(run_id, gateway)


def seal_if_complete(run_id: int, gateway: FirestoreGateway) -> None:
    """Seal the run if its last chunk is in (once), mirror it and follow its breaks."""
    sealed = reports.seal_run(run_id)
    if sealed is not None:
        reports.mirror_run(sealed, gateway=gateway)
        breaks.track_run(sealed)
        run_finished.send(sender=ReconciliationRun, run_id=run_id)


def fail_run(run_id: int, exc: BaseException) -> None:
    log.error("reconciliation run failed", extra={"run_id": run_id, "error": repr(exc)})
    reports.fail_run(run_id, f"{type(exc).__name__}: {exc}")
    run_finished.send(sender=ReconciliationRun, run_id=run_id)
