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
from revassure.firestore import REPORTS, VIOLATIONS, FirestoreGateway

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
        "read_mode": run.read_mode,
        "read_time": _iso(run.read_time),
        "read_mode_reason": run.read_mode_reason,
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


_SEALED_FIELDS = ["status", "finished_at", "chain_seq", "previous_checksum", "checksum", "cleared_at_recheck"]


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
                run.cleared_at_recheck = sorted(
                    (c for cleared in run.chunks.values_list("cleared", flat=True) for c in cleared),
                    key=lambda c: c["uid"],
                )
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
    try:
        gateway.put_report(str(run.pk), mirror_document(run), (record for _, record in mirror_children(run)))
        return True
    except Exception as exc:
        log.error("report mirror failed", extra={"run_id": run.pk, "error": repr(exc)})
        return False


@dataclass
class Problem:
    run_id: int | str
    message: str
    # For a mirror that differs: {"document", "field", "mirror", "report"} (field None for a
    # whole document missing or extra), so a script can tell what differs without parsing text.
    difference: dict | None = None

    def __str__(self) -> str:
        return f"run {self.run_id}: {self.message}"

    def as_json(self) -> dict:
        found = {"run_id": self.run_id, "message": self.message}
        if self.difference is not None:
            found["difference"] = self.difference
        return found


MIRROR_DIFFERENCES_LISTED = 20  # per report; beyond these, the differences are counted


def _canonical(value) -> str:
    """A value as canonical JSON: 2, 2.0, "2" and true all differ (Firestore keeps the type)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=repr)


def _shown(value) -> str:
    text = _canonical(value)
    return text if len(text) <= 80 else text[:79] + "…"


def _field_differences(document: str, mirrored: dict, sealed: dict) -> Iterator[tuple[str, dict]]:
    for name in sorted(set(mirrored) | set(sealed)):
        if name not in mirrored:
            text = f"{name} is missing (the report has {_shown(sealed[name])})"
        elif name not in sealed:
            text = f"{name} is {_shown(mirrored[name])}, a field the report does not have"
        elif _canonical(mirrored[name]) != _canonical(sealed[name]):
            text = f"{name} is {_shown(mirrored[name])}, the report has {_shown(sealed[name])}"
        else:
            continue
        yield (
            text,
            {
                "document": document,
                "field": name,
                "mirror": mirrored.get(name),
                "report": sealed.get(name),
            },
        )


def mirror_differences(
    *,
    path: str,
    mirrored: dict,
    sealed: dict,
    child: tuple[str, str],
    mirrored_children: Iterator[tuple[str, dict]],
    sealed_children: Iterator[tuple[str, dict]],
) -> list[tuple[str, dict]]:
    """Every difference between a report's Firestore mirror and the sealed report:
    each field of the header document (`path`), each document of its `child`
    subcollection ((collection id, what one is called): missing, extra, or a
    field that differs). (message, difference) pairs, at most
    MIRROR_DIFFERENCES_LISTED, then one counting the rest."""
    found: list[tuple[str, dict]] = []

    def add(text: str, difference: dict) -> None:
        found.append((f"Firestore mirror differs from the report: {text}", difference))

    for text, difference in _field_differences(path, mirrored, sealed):
        add(text, difference)
    collection, called = child
    held = dict(mirrored_children)
    for key, record in sealed_children:
        document = f"{path}/{collection}/{key}"
        if key not in held:
            add(
                f"{called} {key} is missing",
                {"document": document, "field": None, "mirror": None, "report": record},
            )
            continue
        for text, difference in _field_differences(document, held.pop(key), record):
            add(f"{called} {key}: {text}", difference)
    for key in sorted(held):
        add(
            f"{called} {key} is there, the report has no such {called}",
            {"document": f"{path}/{collection}/{key}", "field": None, "mirror": held[key], "report": None},
        )
    if len(found) > MIRROR_DIFFERENCES_LISTED:
        more = len(found) - MIRROR_DIFFERENCES_LISTED
        found = found[:MIRROR_DIFFERENCES_LISTED]
        found.append((f"Firestore mirror differs from the report in {more} more places", {"document": path}))
    return found


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
        problems += _mirror_problems(gateway)
    return checked, problems


def _mirror_problems(gateway: FirestoreGateway) -> list[Problem]:
    """Each completed run's mirror against the run: every field, every violation document."""
    problems = []
    mirrored = dict(gateway.stream_reports())
    sealed = ReconciliationRun.objects.filter(status=RunStatus.COMPLETED).order_by("chain_seq", "pk")
    for run in sealed.iterator():
        run_id = str(run.pk)
        if run_id not in mirrored:
            problems.append(Problem(run_id, f"not mirrored to Firestore {REPORTS}"))
            continue
        differences = mirror_differences(
            path=f"{REPORTS}/{run_id}",
            mirrored=mirrored.pop(run_id),
            sealed=mirror_document(run),
            child=(VIOLATIONS, "violation"),
            mirrored_children=gateway.stream_report_violations(run_id),
            sealed_children=mirror_children(run),
        )
        problems += [Problem(run_id, text, difference) for text, difference in differences]
    for report_id in sorted(mirrored):
        problems.append(Problem(report_id, f"in Firestore {REPORTS} but not in the database"))
    return problems
