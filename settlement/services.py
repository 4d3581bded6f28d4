"""Settlement runs: import a statement (from the command line, an upload or the
job API), match it, seal and mirror the report; the dry run.

Every entry point ends in `execute`: the command runs it in process, the admin
upload and the job API queue it for a worker (settlement.tasks.run_import).

A worker matches a run under a lease (revassure/leases.py), renewed by a
heartbeat while it works. django-q2's Redis broker has no receipts: a task a
dead machine had taken is gone. So the minute's sweep (`resume_abandoned`)
hands back a run whose worker's lease lapsed, and queues again a run whose task
was lost before any worker took it; the next worker starts it over from the
kept file (the rows an earlier worker stored are removed first, and a worker
taken for dead can no longer store any: match_progress.Matched.save), so each row is
counted once and the report is what one worker alone would have made.

The same file twice (same SHA-256) is recognised and linked, not refused: the
new run records `repeat_of`, the earlier completed run of that file, and says
so (the command on stderr, the admin on the run's page). Matching the same
statement again is how one sees that a replay or an adjustment closed its
breaks, so it must stay possible.

A dry run is the real run on a scratch run (status `dry_run`, shown nowhere)
whose rows are committed chunk by chunk like a real run's, then deleted in
short batches: the same code decides every row, then nothing of it is kept (no
run, no rows, no chain position) and nothing is written to Firestore (matching
only reads; the mirror is skipped). It is not one long rolled-back transaction:
on SQLite that held the database's only write lock for minutes, and every
webhook, sign-in and scheduled task waiting for it failed.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.uploadedfile import UploadedFile
from django.db import connection, transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.tasks import async_task

from revassure import alerting, dbclock, leases
from revassure.firestore import FirestoreGateway
from revassure.logs import on_commit
from revassure.refusals import require
from settlement import match_progress, matching, reports, statement, storage
from settlement.models import RunStatus, RunTakenOver, RunTrigger, SettlementRow, SettlementRun

log = logging.getLogger(__name__)

PERMISSION = "settlement.run_settlement"
RUN_TASK = "settlement.tasks.run_import"
DISCARD_BATCH = 5000  # a dry run's rows deleted per transaction
ABANDONED_DRY_RUN = timedelta(days=1)
HEAD_BYTES = 64 * 1024  # of an upload, to check its header: enough for any sensible one
# A run whose worker was lost this many times fails instead of going to another
# (a statement that kills every worker taking it, say past the task timeout).
MAX_ATTEMPTS = 3


@dataclass
class Result:
    run: SettlementRun | None  # None for a dry run: nothing was kept
    summary: dict  # exactly reports.SUMMARY_KEYS
    repeat_of: SettlementRun | None
    dry_run: bool


def require_permission(actor: User | None) -> None:
    """A person needs the permission; None is the system (the job API's
    authenticated scheduler, a command on the server)."""
    require(actor, PERMISSION, "import settlement statements", system_may=True)


def check_period(period: tuple[datetime, datetime] | None) -> None:
    if period is None:
        return
    start, end = period
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("the period's times need a time zone")
    if start > end:
        raise ValueError("the period starts after it ends")


def earlier_run_of(sha256: str) -> SettlementRun | None:
    """The latest completed run of the file with this SHA-256."""
    return (
        SettlementRun.objects.filter(file_sha256=sha256, status=RunStatus.COMPLETED).order_by("-pk").first()
    )


def reconcile_file(
    path: str | Path,
    *,
    gateway: FirestoreGateway,
    actor: User | None = None,
    trigger: str = RunTrigger.COMMAND,
    dry_run: bool = False,
    period: tuple[datetime, datetime] | None = None,
) -> Result:
    """Match a statement on this machine, in this process (the command, the demo).
    statement.BadStatement, writing nothing, when the file is not a statement."""
    require_permission(actor)
    check_period(period)
    path = Path(path)
    check_header(path)
    run = SettlementRun(
        status=RunStatus.RUNNING,
        trigger=trigger,
        requested_by=actor,
        source=str(path),
        path=str(path),
        period_start=period[0] if period else None,
        period_end=period[1] if period else None,
        period_given=period is not None,
        started_at=timezone.now(),
        worker=leases.holder(),  # no lease: the command's own process sees it through
    )
    if not dry_run:
        run.save()
        try:
            run = execute(run, gateway=gateway)
        except Exception as exc:  # Firestore gone past its retries, a disk error: the run says so
            fail(run.pk, f"{type(exc).__name__}: {exc}")
            raise
        return Result(run, reports.summary(run), run.repeat_of, False)
    discard_abandoned_dry_runs()
    run.status = RunStatus.DRY_RUN
    run.save()
    try:
        run = execute(run, gateway=gateway, dry_run=True)
        counts = {**reports.summary(run), "run_id": None, "checksum": None}
        return Result(None, counts, run.repeat_of, True)
    finally:
        discard_dry_run(run.pk)


def discard_dry_run(run_id: int) -> None:
    """Delete a dry run's scratch: its rows, then the run."""
    discard_rows(run_id)
    SettlementRun.objects.filter(pk=run_id, status=RunStatus.DRY_RUN).delete()


def discard_rows(run_id: int) -> None:
    """Delete an unfinished run's rows DISCARD_BATCH at a time, each batch
    committed on its own (the database refuses it for a finished run)."""
    table = connection.ops.quote_name(SettlementRow._meta.db_table)
    sql = (
        f"DELETE FROM {table} WHERE id IN "
        f"(SELECT id FROM {table} WHERE run_id = %s ORDER BY id LIMIT {DISCARD_BATCH})"
    )
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [run_id])
            if cursor.rowcount == 0:
                break


def discard_abandoned_dry_runs() -> None:
    """Scratch left by a dry run whose process was killed (none lasts a day)."""
    cutoff = timezone.now() - ABANDONED_DRY_RUN
    for run_id in SettlementRun.objects.filter(status=RunStatus.DRY_RUN, started_at__lt=cutoff).values_list(
        "pk", flat=True
    ):
        discard_dry_run(run_id)


def check_header(path: Path) -> None:
    """statement.BadStatement unless the file starts with a statement's header."""
    with statement.open_rows(path) as lines:
        next(statement.read_rows(lines), None)


def check_upload(upload: UploadedFile) -> None:
    """check_header for an uploaded file, from its first HEAD_BYTES, before it is
    kept (the upload is on this machine; the kept copy may be in a bucket)."""
    upload.seek(0)
    head = upload.read(HEAD_BYTES).decode("utf-8-sig", errors="replace")
    upload.seek(0)
    next(statement.read_rows(io.StringIO(head, newline="")), None)


def request_import(
    *,
    source: str,
    path: str,
    actor: User | None = None,
    trigger: str,
    period: tuple[datetime, datetime] | None = None,
) -> SettlementRun:
    """A run for a worker: an upload kept in the shared storage under the name
    `path`, or a file the job API names (`source` a gs:// URI, read by the
    worker from Cloud Storage, or a local path)."""
    require_permission(actor)
    check_period(period)
    with transaction.atomic():
        run = SettlementRun.objects.create(
            status=RunStatus.PENDING,
            trigger=trigger,
            requested_by=actor,
            source=source,
            path=path,
            period_start=period[0] if period else None,
            period_end=period[1] if period else None,
            period_given=period is not None,
        )
        enqueue(run.pk)
    return run


def enqueue(run_id: int) -> None:
    """Hand the run to a worker after the commit (the task by its dotted path:
    services never import their tasks), noting when (by the database's clock)."""
    SettlementRun.objects.filter(pk=run_id).update(queued_at=dbclock.now())
    on_commit(lambda: async_task(RUN_TASK, run_id, task_name=f"settlement-run-{run_id}"))


def run_pending(run_id: int, *, gateway: FirestoreGateway) -> SettlementRun:
    """A worker's part: claim the queued run under a lease (once: a redelivered
    task finds it taken), read its file from where it is kept (Cloud Storage,
    the shared storage or this machine's disk: storage.statement_file), match
    it, seal it. A run an earlier worker left (it died; the sweep handed the
    run back) starts over: that worker's rows are removed first."""
    worker, lease = leases.holder(), settings.SETTLEMENT_LEASE_SECONDS
    claimed = SettlementRun.objects.filter(pk=run_id, status=RunStatus.PENDING).update(
        status=RunStatus.RUNNING,
        started_at=Coalesce(F("started_at"), Value(timezone.now())),
        worker=worker,
        lease_until=dbclock.ahead(lease),
        attempts=F("attempts") + 1,
    )
    run = SettlementRun.objects.get(pk=run_id)
    if not claimed:
        return run
    held = SettlementRun.objects.filter(pk=run_id, status=RunStatus.RUNNING, worker=worker)
    try:
        with leases.Heartbeat(lambda: held.update(lease_until=dbclock.ahead(lease)) == 1, lease):
            if run.attempts > 1:
                start_over(run)
            with storage.statement_file(run.source, run.path) as path:
                check_header(path)
                return execute(run, gateway=gateway, path=path)
    except RunTakenOver:
        # This worker was taken for dead (its lease lapsed): another one matches it now.
        log.warning("settlement run taken over by another worker", extra={"run_id": run_id})
        return SettlementRun.objects.get(pk=run_id)
    except Exception as exc:
        fail(
            run.pk,
            f"{type(exc).__name__}: {exc}" if not isinstance(exc, statement.BadStatement) else str(exc),
            worker=worker,
        )
        log.exception("settlement run failed", extra={"run_id": run_id})
        return SettlementRun.objects.get(pk=run_id)


def start_over(run: SettlementRun) -> None:
    """Remove what an earlier worker of the run stored, and its counters: the
    run is matched again from the first row."""
    log.warning(
        "settlement run started over", extra={"run_id": run.pk, "attempt": run.attempts, "rows": run.rows}
    )
    discard_rows(run.pk)
    SettlementRun.objects.filter(pk=run.pk, worker=run.worker).update(**match_progress.Tally().fields())


def resume_abandoned() -> dict[str, int]:
    """Every minute: runs whose worker was lost go to a worker again.

    - a running run whose lease lapsed (its worker died, its task gone with the
      Redis broker) is set back to pending and queued, or failed once it was
      taken MAX_ATTEMPTS times;
    - a pending run whose task may have been lost with a machine (the broker
      holds nothing and it was queued more than a lease ago, or it was queued
      longer ago than a task may wait, Q_RETRY) is queued again.

    A command's run (no lease) is left to its process. Handing a run out twice is
    harmless: the second task finds it taken."""
    lapsed = SettlementRun.objects.filter(leases.lapsed(), status=RunStatus.RUNNING)
    handed_back, failed = [], 0
    for run_id, attempts in lapsed.values_list("pk", "attempts"):
        if attempts >= MAX_ATTEMPTS:
            failed += fail(
                run_id,
                f"its worker was lost {attempts} times (machines died or timed out matching it)",
                where=leases.lapsed(),
            )
            continue
        with transaction.atomic():
            if lapsed.filter(pk=run_id).update(status=RunStatus.PENDING, worker="", lease_until=None):
                enqueue(run_id)
                handed_back.append(run_id)
    lease = settings.SETTLEMENT_LEASE_SECONDS
    waited = Q(queued_at__lt=dbclock.ago(settings.Q_CLUSTER["retry"]))
    if get_broker().queue_size() == 0:
        waited |= Q(queued_at__lt=dbclock.ago(lease))
    lost = list(
        SettlementRun.objects.filter(waited, status=RunStatus.PENDING)
        .exclude(pk__in=handed_back)
        .values_list("pk", flat=True)
    )
    for run_id in lost:
        with transaction.atomic():
            enqueue(run_id)
    found = {"handed_back": len(handed_back), "queued_again": len(lost), "failed": failed}
    if any(found.values()):
        log.warning("settlement runs lost with a worker handed out again", extra=found)
    return found


def execute(
    run: SettlementRun, *, gateway: FirestoreGateway, dry_run: bool = False, path: Path | None = None
) -> SettlementRun:
    """Digest, match, seal and mirror a running run whose file is at `path` on
    this machine (by default run.path)."""
    path = path or Path(run.path)
    sha256, size, lines = storage.digest(path)
    repeat = earlier_run_of(sha256)
    if not SettlementRun.objects.filter(pk=run.pk, worker=run.worker).update(
        file_sha256=sha256, file_bytes=size, expected_rows=max(lines - 1, 0), repeat_of=repeat
    ):
        raise RunTakenOver(f"settlement run {run.pk} was taken over by another worker")
    run.refresh_from_db()
    if repeat is not None:
        log.info("settlement statement imported before", extra={"run_id": run.pk, "repeat_of": repeat.pk})
    period: tuple[datetime, datetime] | None = None
    if run.period_given:
        assert run.period_start is not None and run.period_end is not None  # given: both ends
        period = (run.period_start, run.period_end)
    with statement.open_rows(path) as rows:
        matched = matching.match_statement(run, rows, gateway=gateway, period=period)
    run.refresh_from_db()
    if dry_run:
        return run
    run = reports.seal(run, matched.rows.hexdigest())
    reports.mirror(run, gateway=gateway)
    alerting.evaluate_soon()
    log.info(
        "settlement run completed",
        extra={"run_id": run.pk, "rows": run.rows, "checksum": run.checksum, **run.counts()},
    )
    return run


def fail(run_id: int, error: str, *, worker: str | None = None, where: Q | None = None) -> int:
    """Failed, with the reason shown on the run, unless it ended already (or,
    given `worker`, another worker took it over): 1 if it failed now."""
    rows = SettlementRun.objects.filter(pk=run_id, status__in=[RunStatus.PENDING, RunStatus.RUNNING])
    if worker is not None:
        rows = rows.filter(worker=worker)
    if where is not None:
        rows = rows.filter(where)
    return rows.update(
        status=RunStatus.FAILED, finished_at=timezone.now(), error=error[:4000], lease_until=None
    )
