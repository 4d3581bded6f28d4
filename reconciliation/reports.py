"""Sealed reports: canonical form, checksum, hash chain, verification, mirror.

A completed run is sealed once: its canonical serialisation (a header line,
then one line per violation in uid order, each a compact JSON object with
sorted keys) is hashed with SHA-256, and the run records the checksum of the
completed run before it. Editing a report changes its checksum; deleting one
breaks the chain (positions are consecutive); both are found by `verify()`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC

from django.db import IntegrityError, transaction
from django.utils import timezone

from reconciliation.models import ReconciliationRun, RunStatus, Violation
from revassure import alerting, metrics
from revassure.firestore import FirestoreGateway

log = logging.getLogger(__name__)

FORMAT = "revassure.reconciliation-report.v1"


def _iso(value) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


def header(run: ReconciliationRun) -> dict:
    return {
        "format": FORMAT,
        "run_id": run.pk,
        "status": run.status,
        "trigger": run.trigger,
        "requested_by": run.requested_by_id,
        "scope_uids": run.scope_uids,
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "wallets_checked": run.wallets_checked,
        "violations_count": run.violations_count,
        "drift_count": run.drift_count,
        "malformed_count": run.malformed_count,
        "total_abs_drift": run.total_abs_drift,
        "total_wallet_points": run.total_wallet_points,
        "total_ledger_sum": run.total_ledger_sum,
        "chain_seq": run.chain_seq,
        "previous_checksum": run.previous_checksum,
    }


def violation_record(violation: Violation) -> dict:
    return {
        "uid": violation.uid,
        "kind": violation.kind,
        "wallet_points": violation.wallet_points,
        "ledger_sum": violation.ledger_sum,
        "delta": violation.delta,
        "entries": violation.entries,
        "details": violation.details,
    }


def describe_details(details: dict) -> str:
    """A violation's details as one line for a person (the admin, the CSV export):
    what is wrong with the wallet, which entries are malformed, how many more."""
    listed = details.get("malformed_entries", [])
    parts = [details["wallet"]] if details.get("wallet") else []
    parts += [f"{m['entry']}: {m['problem']} ({m['amount']})" for m in listed]
    hidden = details.get("malformed_entries_total", 0) - len(listed)
    if hidden > 0:
        parts.append(f"and {hidden} more malformed entries")
    return "; ".join(parts)


def run_summary(run: ReconciliationRun) -> dict:
    """A run as it is shown outside: `manage.py reconcile --json` prints it, the
    job API answers with its fields (jobs.views.RUN_FIELDS).

    Not the sealed form: header() is that (and the Firestore mirror is header()
    plus the checksum), frozen by the checksum of every report sealed so far.
    """
    return {
        "run_id": run.pk,
        "status": run.status,
        "wallets_checked": run.wallets_checked,
        "violations_count": run.violations_count,
        "total_abs_drift": run.total_abs_drift,
        "total_wallet_points": run.total_wallet_points,
        "total_ledger_sum": run.total_ledger_sum,
        "liability_difference": run.liability_difference,
        "checksum": run.checksum,
        "error": run.error,
    }


def _line(data: dict) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode() + b"\n"


def violations_of(run: ReconciliationRun) -> Iterator[Violation]:
    return Violation.objects.filter(run_id=run.pk).order_by("uid").iterator(chunk_size=2000)


def compute_checksum(run: ReconciliationRun) -> str:
    """SHA-256 over the canonical form, streamed: memory does not grow with violations."""
    digest = hashlib.sha256(_line(header(run)))
    for violation in violations_of(run):
        digest.update(_line(violation_record(violation)))
    return digest.hexdigest()


_SEALED_FIELDS = ["status", "finished_at", "chain_seq", "previous_checksum", "checksum"]


def seal_run(run_id: int, attempts: int = 5) -> ReconciliationRun | None:
    """Complete a run whose chunks are all done; None when it is not ready (or sealed already)."""
    for attempt in range(attempts):
        try:
            with transaction.atomic():
                run = ReconciliationRun.objects.select_for_update().get(pk=run_id)
                if (
                    run.status != RunStatus.RUNNING
                    or run.chunks_total is None
                    or run.chunks_done < run.chunks_total
                ):
                    return None
                previous = (
                    ReconciliationRun.objects.filter(chain_seq__isnull=False).order_by("-chain_seq").first()
                )
                run.chain_seq = previous.chain_seq + 1 if previous else 1
                run.previous_checksum = previous.checksum if previous else ""
                run.status = RunStatus.COMPLETED
                run.finished_at = timezone.now()
                run.checksum = compute_checksum(run)
                run.chunks.all().delete()
                # The row is still `running` in the database: update it directly,
                # since save() refuses once the status reads as finished.
                ReconciliationRun.objects.filter(pk=run_id, status=RunStatus.RUNNING).update(
                    **{name: getattr(run, name) for name in _SEALED_FIELDS}
                )
            alerting.evaluate_soon()
            metrics.run_ended(
                status=RunStatus.COMPLETED,
                wallets_checked=run.wallets_checked,
                duration_seconds=run.duration.total_seconds() if run.duration else None,
            )
            log.info(
                "reconciliation run completed",
                extra={"run_id": run_id, "violations": run.violations_count, "checksum": run.checksum},
            )
            return run
        except IntegrityError:
            # Another run took this chain position at the same moment: take the next.
            if attempt == attempts - 1:
                raise
    return None


def fail_run(run_id: int, error: str) -> None:
    failed = ReconciliationRun.objects.filter(
        pk=run_id, status__in=[RunStatus.PENDING, RunStatus.RUNNING]
    ).update(status=RunStatus.FAILED, finished_at=timezone.now(), error=error[:4000])
    if failed:
        metrics.run_ended(status=RunStatus.FAILED)
        alerting.evaluate_soon()


def mirror_run(run: ReconciliationRun, *, gateway: FirestoreGateway) -> bool:
    """Mirror a sealed run to Firestore `reconciliationReports/{run_id}`.

    A failure is logged, not raised: the run itself is complete, and
    verify_reports names any run whose mirror is missing or differs.
    """
    try:
        gateway.put_report(
            str(run.pk),
            {**header(run), "checksum": run.checksum},
            (violation_record(v) for v in violations_of(run)),
        )
        return True
    except Exception as exc:
        log.error("report mirror failed", extra={"run_id": run.pk, "error": repr(exc)})
        return False


@dataclass
class Problem:
    run_id: int | str
    message: str

    def __str__(self) -> str:
        return f"run {self.run_id}: {self.message}"


def verify(*, gateway: FirestoreGateway | None = None) -> tuple[int, list[Problem]]:
    """Check every completed run's checksum and chain link (and mirror, given a gateway).

    Returns (runs checked, problems found).
    """
    problems: list[Problem] = []
    expected_seq, previous_checksum, checked = 1, "", 0
    checksums: dict[str, str] = {}
    sealed = ReconciliationRun.objects.filter(status=RunStatus.COMPLETED).order_by("chain_seq", "pk")
    for run in sealed.iterator():
        checked += 1
        checksums[str(run.pk)] = run.checksum
        if run.chain_seq is None:
            problems.append(Problem(run.pk, "completed but not in the chain"))
            continue
        if run.chain_seq != expected_seq:
            problems.append(
                Problem(
                    run.pk, f"chain position {run.chain_seq}, expected {expected_seq}: a report is missing"
                )
            )
        elif run.previous_checksum != previous_checksum:
            problems.append(Problem(run.pk, "previous checksum does not match the report before it"))
        actual = compute_checksum(run)
        if actual != run.checksum:
            problems.append(Problem(run.pk, f"checksum mismatch: stored {run.checksum}, content {actual}"))
        expected_seq, previous_checksum = run.chain_seq + 1, run.checksum
    if gateway is not None:
        mirrored = {}
        for report_id, data in gateway.stream_reports():
            mirrored[report_id] = data.get("checksum")
        for run_id, checksum in checksums.items():
            if run_id not in mirrored:
                problems.append(Problem(run_id, "not mirrored to Firestore reconciliationReports"))
            elif mirrored[run_id] != checksum:
                problems.append(Problem(run_id, "Firestore mirror's checksum differs from the report"))
        for report_id in sorted(set(mirrored) - set(checksums)):
            problems.append(Problem(report_id, "in Firestore reconciliationReports but not in the database"))
    return checked, problems
