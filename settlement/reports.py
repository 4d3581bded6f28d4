"""Sealed settlement reports: canonical form, checksum, hash chain, verification,
mirror; in the shape of reconciliation/reports.py, in a chain of their own.

The canonical form is a header line (counts, totals, the file's SHA-256, the
period, the chain link), then the SHA-256 of the rows' lines: one per row in id
order (statement rows in file order, then the applied payments the statement
lacks), each a compact JSON object with sorted keys (settlement.records).
Sealing, verifying and mirroring are the kernel's (revassure.sealing.chain):
this module gives it what only a settlement report knows (KIND, registered by
the app); verify_reports walks every registered kind.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from datetime import UTC

from revassure.firestore import SETTLEMENT_REPORTS, SETTLEMENT_ROWS, FirestoreGateway
from revassure.sealing import chain as sealing
from revassure.sealing.canonical import line
from revassure.sealing.chain import Problem
from revassure.sealing.models import FinishedRecordError
from settlement.models import OUTCOMES, Outcome, RunStatus, RunTakenOver, SettlementRow, SettlementRun
from settlement.records import COLUMNS, record

log = logging.getLogger(__name__)

FORMAT = "revassure.settlement-report.v1"
SUMMARY_KEYS = (
    "run_id",
    "rows",
    "matched",
    "missing_in_ledger",
    "missing_at_provider",
    "points_mismatch",
    "user_mismatch",
    "unreversed",
    "duplicate_in_statement",
    "not_settled",
    "malformed_rows",
    "checksum",
)


def _iso(value) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


def header(run: SettlementRun) -> dict:
    return {
        "format": FORMAT,
        "run_id": run.pk,
        "status": run.status,
        "trigger": run.trigger,
        "requested_by": run.requested_by_id,
        "source": run.source,
        "file_sha256": run.file_sha256,
        "file_bytes": run.file_bytes,
        "repeat_of": run.repeat_of_id,
        "period_start": _iso(run.period_start),
        "period_end": _iso(run.period_end),
        "period_given": run.period_given,
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "rows": run.rows,
        **run.counts(),
        "malformed_rows": run.malformed_rows,
        "totals": run.totals,
        "chain_seq": run.chain_seq,
        "previous_checksum": run.previous_checksum,
    }


def summary(run: SettlementRun | None, counts: dict | None = None) -> dict:
    """What `reconcile_settlement --json` prints: exactly SUMMARY_KEYS. A dry
    run passes its counts (nothing was kept: run_id and checksum are null)."""
    if counts is None:
        assert run is not None  # only a dry run passes counts, and only it has no run
        counts = {"rows": run.rows, **run.counts(), "malformed_rows": run.malformed_rows}
    return {
        "run_id": run.pk if run is not None else None,
        **{name: counts[name] for name in SUMMARY_KEYS[1:-1]},
        "checksum": (run.checksum or None) if run is not None else None,
    }


def rows_of(run: SettlementRun) -> Iterator[dict]:
    """The run's rows as dicts of COLUMNS, in id order (the order they were stored)."""
    values = SettlementRow.objects.filter(run_id=run.pk).order_by("id").values_list(*COLUMNS)
    for row in values.iterator(chunk_size=2000):
        yield dict(zip(COLUMNS, row, strict=True))


def rows_digest(run: SettlementRun) -> str:
    digest = hashlib.sha256()
    for row in rows_of(run):
        digest.update(line(record(row)))
    return digest.hexdigest()


def checksum_of(run: SettlementRun, rows_sha256: str) -> str:
    """SHA-256 of the header line followed by the SHA-256 of the rows' lines:
    the rows' digest is made while they are stored (match_progress.Rows), so sealing
    reads nothing back; verify() recomputes it from the database."""
    return hashlib.sha256(line(header(run)) + rows_sha256.encode() + b"\n").hexdigest()


def compute_checksum(run: SettlementRun) -> str:
    """The checksum from the database, streamed: memory does not grow with rows."""
    return checksum_of(run, rows_digest(run))


def seal(run: SettlementRun, rows_sha256: str, attempts: int = 5) -> SettlementRun:
    """Complete a running run, if it is still its worker's (`run.worker`): next
    position in the chain, checksum, status, the lease let go. `rows_sha256`:
    the digest of its rows' lines, made as they were stored. RunTakenOver when
    another worker took the run over meanwhile."""
    sealed = sealing.seal(
        KIND,
        run.pk,
        checksum=lambda run: checksum_of(run, rows_sha256),
        ready=lambda current: current.worker == run.worker,
        values={"lease_until": None},
        attempts=attempts,
    )
    if sealed is None:
        if SettlementRun.objects.filter(
            pk=run.pk, status__in=(RunStatus.PENDING, RunStatus.RUNNING)
        ).exists():
            raise RunTakenOver(f"settlement run {run.pk} was taken over by another worker")
        raise FinishedRecordError(f"settlement run {run.pk} is not running: it cannot be sealed")
    return sealed


def mirror_document(run: SettlementRun) -> dict:
    """What `settlementReports/{run id}` holds: the header with its checksum."""
    return {**header(run), "checksum": run.checksum}


def mirror_children(run: SettlementRun) -> Iterator[tuple[str, dict]]:
    """What its `rows` subcollection holds: (row id, record) of each row that is
    not matched (the breaks), in id order."""
    breaks = (
        SettlementRow.objects.filter(run_id=run.pk)
        .exclude(outcome=Outcome.MATCHED)
        .order_by("id")
        .values_list("id", *COLUMNS)
    )
    for pk, *values in breaks.iterator(chunk_size=2000):
        yield str(pk), record(dict(zip(COLUMNS, values, strict=True)))


def mirror(run: SettlementRun, *, gateway: FirestoreGateway) -> bool:
    """Mirror a sealed run to Firestore `settlementReports/{run id}`: the header
    with its checksum, and the rows that are not matched (the breaks) in its
    `rows` subcollection. A failure is logged, not raised: verify_reports
    names a run whose mirror is missing or differs."""
    return sealing.mirror(KIND, run, gateway=gateway)


def verify(*, gateway: FirestoreGateway | None = None) -> tuple[int, list[Problem]]:
    """Every completed settlement run's checksum and chain link (and mirror, given
    a gateway: every field and every row document): (runs checked, problems
    found), named `settlement N`."""
    return sealing.verify(KIND, gateway=gateway)


def at_stake(run: SettlementRun) -> list[dict]:
    """Per outcome (breaks first in OUTCOMES order): rows, points and money per
    currency, for the top of the run's page."""
    result = []
    for outcome in OUTCOMES:
        total = run.totals.get(outcome, {})
        result.append(
            {
                "outcome": outcome,
                "label": Outcome(outcome).label,
                "rows": getattr(run, outcome),
                "points": total.get("points", 0),
                "money": sorted(total.get("money", {}).items()),
            }
        )
    return result


KIND = sealing.ReportKind(
    name="settlement",
    model=SettlementRun,
    open_status=RunStatus.RUNNING,
    sealed_status=RunStatus.COMPLETED,
    chained=(RunStatus.COMPLETED,),
    compute_checksum=compute_checksum,
    problem_name=lambda pk: f"settlement {pk}",
    unchained="completed but not in the settlement chain",
    mirror=sealing.Mirror(
        collection=SETTLEMENT_REPORTS,
        child=(SETTLEMENT_ROWS, "row"),
        document=mirror_document,
        children=mirror_children,
        put=lambda gateway, run: gateway.put_settlement_report(
            str(run.pk), mirror_document(run), mirror_children(run)
        ),
        stream=lambda gateway: gateway.stream_settlement_reports(),
        stream_children=lambda gateway, run_id: gateway.stream_settlement_report_rows(run_id),
    ),
)
