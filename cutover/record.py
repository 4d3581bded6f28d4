"""The sealed record of a cutover: canonical form, checksum, verification.

Like the reconciliation reports, a finished or aborted cutover is serialised
once in the kernel's canonical JSON (revassure.sealing.canonical) and hashed
with SHA-256, and takes the next place in the chain of cutover records
(KIND, registered by the app: verify_reports checks it with the reports).
`verify()` rebuilds the record from the rows and recomputes the hash, so an
edit made behind the model's back (a raw UPDATE, a restored backup) and an
edited export are both found.

Records sealed before the kernel were hashed with non-ASCII characters as
UTF-8 rather than escaped (canonical.legacy_utf8): the same bytes for ASCII
text. Their checksums still verify: a checksum matches a record in either form.
"""

from __future__ import annotations

import hashlib
from datetime import UTC

from cutover.models import ENDED, Cutover, CutoverStatus, CutoverStep
from revassure.sealing import chain as sealing
from revassure.sealing.canonical import canonical, legacy_utf8

FORMAT = "revassure.cutover-record.v1"


def _iso(value) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


def _who(user) -> str | None:
    return user.get_username() if user else None


def step_record(step: CutoverStep) -> dict:
    return {
        "number": step.number,
        "key": step.key,
        "title": step.get_key_display(),
        "state": step.state,
        "evidence": step.evidence,
        "confirmed_by": _who(step.confirmed_by),
        "confirmed_at": _iso(step.confirmed_at),
        "note": step.note,
        "override_reason": step.override_reason,
        "accepted_by": _who(step.accepted_by),
        "accepted_at": _iso(step.accepted_at),
        "accept_reason": step.accept_reason,
    }


def build(cutover: Cutover) -> dict:
    """The whole record as it stands in the database (in progress or not)."""
    steps = CutoverStep.objects.filter(cutover=cutover).select_related("confirmed_by", "accepted_by")
    return {
        "format": FORMAT,
        "id": cutover.pk,
        "name": cutover.name,
        "target": cutover.target,
        "monitor_minutes": cutover.monitor_minutes,
        "status": cutover.status,
        "started_by": _who(cutover.started_by),
        "started_at": _iso(cutover.started_at),
        "finished_at": _iso(cutover.finished_at),
        "abort_reason": cutover.abort_reason,
        "aborted_by": _who(cutover.aborted_by),
        "rollback": cutover.rollback,
        "steps": [step_record(step) for step in steps.order_by("number")],
    }


def checksum(record: dict) -> str:
    return hashlib.sha256(canonical(record)).hexdigest()


def matches(record: dict, expected: str) -> bool:
    """The record hashes to `expected`, in the canonical form or the one records
    sealed before the kernel were hashed in."""
    return bool(expected) and expected in (checksum(record), hashlib.sha256(legacy_utf8(record)).hexdigest())


def sealed_checksum(cutover: Cutover) -> str:
    """The checksum of the cutover's rows as they stand: in the form its record
    was sealed in (the legacy one when that is what matches)."""
    rebuilt = build(cutover)
    return cutover.checksum if matches(rebuilt, cutover.checksum) else checksum(rebuilt)


def seal_content(cutover: Cutover) -> str:
    """When sealing: the record built from the rows, stored on the cutover, and its checksum."""
    cutover.record = build(cutover)
    return checksum(cutover.record)


def export(cutover: Cutover) -> dict:
    """What `Download JSON` and `cutover status --json` give: the sealed record
    with its checksum, or the record so far (checksum null) while in progress."""
    if cutover.checksum:
        return {"record": cutover.record, "checksum": cutover.checksum}
    return {"record": build(cutover), "checksum": None}


def verify_export(data: dict) -> bool:
    """An exported record still matches the checksum it was exported with."""
    return bool(data.get("checksum")) and matches(data["record"], data["checksum"])


def verify(cutover: Cutover) -> list[str]:
    """What is wrong with a sealed cutover's record; empty when it verifies."""
    if not cutover.checksum:
        return [f"cutover {cutover.name} is not sealed yet"]
    problems = []
    problems += stored_record_problems(cutover)
    if not matches(build(cutover), cutover.checksum):
        problems.append("the cutover's rows no longer match its sealed record")
    return problems


def stored_record_problems(cutover: Cutover) -> list[str]:
    if cutover.record is None or not matches(cutover.record, cutover.checksum):
        return ["the stored record does not match its checksum"]
    return []


KIND = sealing.ReportKind(
    name="cutover",
    model=Cutover,
    open_status=CutoverStatus.IN_PROGRESS,
    sealed_status=CutoverStatus.FINISHED,
    chained=ENDED,
    compute_checksum=sealed_checksum,
    problem_name=lambda pk: f"cutover {pk}",
    unchained="sealed but not in the cutover chain",
    also_check=stored_record_problems,
    content_fields=("record",),
)
