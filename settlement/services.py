"""Settlement runs: import a statement (from the command line, an upload or the
job API), match it, seal and mirror the report; the dry run.

Every entry point ends in `execute`: the command runs it in process, the admin
upload and the job API queue it for a worker (settlement.tasks.run_import).

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

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from django_q.tasks import async_task

from revassure import alerting
from revassure.firestore import FirestoreGateway
from revassure.logs import on_commit
from revassure.refusals import require
from settlement import matching, reports, statement, storage
from settlement.models import RunStatus, RunTrigger, SettlementRow, SettlementRun

log = logging.getLogger(__name__)

PERMISSION = "settlement.run_settlement"
RUN_TASK = "settlement.tasks.run_import"
DISCARD_BATCH = 5000  # a dry run's rows deleted per transaction
ABANDONED_DRY_RUN = timedelta(days=1)
HEAD_BYTES = 64 * 1024  # of an upload, to check its header: enough for any sensible one


@dataclass
class Result:
    run: SettlementRun | None  # None for a dry run: nothing was kept
    summary: dict  # exactly reports.SUMMARY_KEYS
    repeat_of: SettlementRun | None
    dry_run: bool


def require_permission(actor) -> None:
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
    actor=None,
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
    """Delete a dry run's scratch: its rows DISCARD_BATCH at a time, each batch
    committed on its own, then the run."""
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
    SettlementRun.objects.filter(pk=run_id, status=RunStatus.DRY_RUN).delete()


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


def check_upload(upload) -> None:
    """check_header for an uploaded file, from its first HEAD_BYTES, before it is
    kept (the upload is on this machine; the kept copy may be in a bucket)."""
    upload.seek(0)
    head = upload.read(HEAD_BYTES).decode("utf-8-sig", errors="replace")
    upload.seek(0)
    next(statement.read_rows(io.StringIO(head, newline="")), None)


def request_import(*, source: str, path: str, actor=None, trigger: str, period=None) -> SettlementRun:
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
        on_commit(lambda: async_task(RUN_TASK, run.pk, task_name=f"settlement-run-{run.pk}"))
    return run


def run_pending(run_id: int, *, gateway: FirestoreGateway) -> SettlementRun:
    """A worker's part: claim the queued run (once: a redelivered task finds it
    taken), read its file from where it is kept (Cloud Storage, the shared
    storage or this machine's disk: storage.statement_file), match it, seal it."""
    claimed = SettlementRun.objects.filter(pk=run_id, status=RunStatus.PENDING).update(
        status=RunStatus.RUNNING, started_at=timezone.now()
    )
    run = SettlementRun.objects.get(pk=run_id)
    if not claimed:
        return run
    try:
        with storage.statement_file(run.source, run.path) as path:
            check_header(path)
            return execute(run, gateway=gateway, path=path)
    except Exception as exc:
        fail(
            run.pk,
            f"{type(exc).__name__}: {exc}" if not isinstance(exc, statement.BadStatement) else str(exc),
        )
        log.exception("settlement run failed", extra={"run_id": run_id})
        return SettlementRun.objects.get(pk=run_id)


def execute(
    run: SettlementRun, *, gateway: FirestoreGateway, dry_run: bool = False, path: Path | None = None
) -> SettlementRun:
    """Digest, match, seal and mirror a running run whose file is at `path` on
    this machine (by default run.path)."""
    path = path or Path(run.path)
    sha256, size, lines = storage.digest(path)
    repeat = earlier_run_of(sha256)
    SettlementRun.objects.filter(pk=run.pk).update(
        file_sha256=sha256, file_bytes=size, expected_rows=max(lines - 1, 0), repeat_of=repeat
    )
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


def fail(run_id: int, error: str) -> None:
    SettlementRun.objects.filter(Q(pk=run_id) & Q(status__in=[RunStatus.PENDING, RunStatus.RUNNING])).update(
        status=RunStatus.FAILED, finished_at=timezone.now(), error=error[:4000]
    )
