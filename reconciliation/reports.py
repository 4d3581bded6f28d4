"""Sealed reports: canonical form, checksum, hash chain, verification, mirror.

A completed run is sealed once: its canonical serialisation (a header line,
then one line per violation in uid order, each a compact JSON object with
sorted keys) is hashed with SHA-256, and the run records the checksum of the
completed run before it. Editing a report changes its checksum; deleting one
breaks the chain (positions are consecutive); both are found by `verify()`.

Sealing, verifying and mirroring are the kernel's (revassure.sealing.chain):
this module gives it what only a reconciliation report knows (KIND, registered
by the app); verify_reports walks every registered kind.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime

from django.utils import timezone

from reconciliation.models import ReconciliationRun, RunStatus, Violation
from revassure import alerting, leases, metrics
from revassure.firestore import REPORTS, VIOLATIONS, FirestoreGateway
from revassure.sealing import chain as sealing
from revassure.sealing.canonical import line
from revassure.sealing.chain import Problem

log = logging.getLogger(__name__)

FORMAT = "revassure.reconciliation-report.v1"


def _iso(value) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


def header(run: ReconciliationRun) -> dict:
    return {**_header(run), **read_time_header(run)}


def read_time_header(run: ReconciliationRun) -> dict:
    """How the run read (reconciliation/instant.py): absent from runs sealed before
    reads had a mode, so their canonical form, and checksum, are what they were."""
    if not run.read_mode:
        return {}
    return {
        "read_mode": run.read_mode,
        "read_time": _iso(run.read_time),
        "read_mode_reason": run.read_mode_reason,
        "cleared_at_recheck": run.cleared_at_recheck,
    }


def _header(run: ReconciliationRun) -> dict:
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
    record = {
        "uid": violation.uid,
        "kind": violation.kind,
        "wallet_points": violation.wallet_points,
        "ledger_sum": violation.ledger_sum,
        "delta": violation.delta,
        "entries": violation.entries,
        "details": violation.details,
    }
    if violation.at_read_time is not None:  # what the first read saw; the above held at the re-check
        record["at_read_time"] = violation.at_read_time
        record["held_at_recheck"] = True
    return record


def describe_details(details: dict) -> str:
    """A violation's details as one line for a person (the admin, the CSV export):
    what is wrong with the wallet, which entries are malformed, how many more,
    which malformed entries corrections supersede."""
    listed = details.get("malformed_entries", [])
    parts = [details["wallet"]] if details.get("wallet") else []
    parts += [f"{m['entry']}: {m['problem']} ({m['amount']})" for m in listed]
    hidden = details.get("malformed_entries_total", 0) - len(listed)
    if hidden > 0:
        parts.append(f"and {hidden} more malformed entries")
    parts += [
        f"{c['entry']} ({c['amount']}) superseded by its correction {c['corrected_by']}"
        for c in details.get("corrected_entries", [])
    ]
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
        "read_mode": run.read_mode,
        "read_time": _iso(run.read_time),
        "read_mode_reason": run.read_mode_reason,
        "checksum": run.checksum,
        "error": run.error,
    }


def violations_of(run: ReconciliationRun) -> Iterator[Violation]:
    return Violation.objects.filter(run_id=run.pk).order_by("uid").iterator(chunk_size=2000)


def compute_checksum(run: ReconciliationRun) -> str:
    """SHA-256 over the canonical form, streamed: memory does not grow with violations."""
    digest = hashlib.sha256(line(header(run)))
    for violation in violations_of(run):
        digest.update(line(violation_record(violation)))
    return digest.hexdigest()


def seal_run(run_id: int, attempts: int = 5) -> ReconciliationRun | None:
    """Complete a run whose chunks are all done; None when it is not ready (or sealed already)."""
    run = sealing.seal(
        KIND,
        run_id,
        ready=lambda run: run.chunks_total is not None and run.chunks_done >= run.chunks_total,
        checksum=_gathered_and_checksummed,
        values={"cleared_at_recheck": [], "checked_by": {}},
        before=lambda run: run.chunks.all().delete(),
        attempts=attempts,
    )
    if run is None:
        return None
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


def _gathered_and_checksummed(run: ReconciliationRun) -> str:
    """The wallets the chunks cleared at their live re-check, gathered into the
    run (sealed with it, in uid order), and how many chunks each machine
    counted (for ops, outside the checksum), then the run's checksum."""
    run.cleared_at_recheck = sorted(
        (c for cleared in run.chunks.values_list("cleared", flat=True) for c in cleared),
        key=lambda c: c["uid"],
    )
    machines = Counter(leases.machine_of(w) for w in run.chunks.values_list("worker", flat=True))
    run.checked_by = dict(sorted(machines.items()))
    return compute_checksum(run)


def seal_seeded(run_id: int, finished_at: datetime) -> ReconciliationRun:
    """Seal a seeded history run as finished at `finished_at`, in the same chain,
    without the alerts, metrics and log line of a live run (the demo)."""
    run = sealing.seal(KIND, run_id, finished_at=finished_at)
    assert run is not None  # seeded open just before: sealing it seals it
    return run


def fail_run(run_id: int, error: str) -> None:
    failed = ReconciliationRun.objects.filter(
        pk=run_id, status__in=[RunStatus.PENDING, RunStatus.RUNNING]
    ).update(status=RunStatus.FAILED, finished_at=timezone.now(), error=error[:4000])
    if failed:
        metrics.run_ended(status=RunStatus.FAILED)
        alerting.evaluate_soon()


def mirror_document(run: ReconciliationRun) -> dict:
    """What `reconciliationReports/{run id}` holds: the header with its checksum."""
    return {**header(run), "checksum": run.checksum}


def mirror_children(run: ReconciliationRun) -> Iterator[tuple[str, dict]]:
    """What its `violations` subcollection holds: (uid, violation record) in uid order."""
    return ((v.uid, violation_record(v)) for v in violations_of(run))


def mirror_run(run: ReconciliationRun, *, gateway: FirestoreGateway) -> bool:
    """Mirror a sealed run to Firestore `reconciliationReports/{run_id}`.

    A failure is logged, not raised: the run itself is complete, and
    verify_reports names any run whose mirror is missing or differs.
    """
    return sealing.mirror(KIND, run, gateway=gateway)


def verify(*, gateway: FirestoreGateway | None = None) -> tuple[int, list[Problem]]:
    """Check every completed run's checksum and chain link (and mirror, given a gateway).

    Returns (runs checked, problems found).
    """
    return sealing.verify(KIND, gateway=gateway)


def _put_mirror(gateway: FirestoreGateway, run: ReconciliationRun) -> None:
    gateway.put_report(str(run.pk), mirror_document(run), (record for _, record in mirror_children(run)))


KIND = sealing.ReportKind(
    name="reconciliation",
    model=ReconciliationRun,
    open_status=RunStatus.RUNNING,
    sealed_status=RunStatus.COMPLETED,
    chained=(RunStatus.COMPLETED,),
    compute_checksum=compute_checksum,
    mirror=sealing.Mirror(
        collection=REPORTS,
        child=(VIOLATIONS, "violation"),
        document=mirror_document,
        children=mirror_children,
        put=_put_mirror,
        stream=lambda gateway: gateway.stream_reports(),
        stream_children=lambda gateway, run_id: gateway.stream_report_violations(run_id),
    ),
)
