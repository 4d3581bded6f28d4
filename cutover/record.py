"""The sealed record of a cutover: canonical form, checksum, verification.

Like the reconciliation reports (reconciliation/reports.py), a finished or
aborted cutover is serialised once as JSON with sorted keys and compact
separators and hashed with SHA-256. `verify()` rebuilds the record from the
rows and recomputes the hash, so an edit made behind the model's back (a raw
UPDATE, a restored backup) and an edited export are both found.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC

from cutover.models import Cutover, CutoverStep

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


def canonical(record: dict) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def checksum(record: dict) -> str:
    return hashlib.sha256(canonical(record)).hexdigest()


def export(cutover: Cutover) -> dict:
    """What `Download JSON` and `cutover status --json` give: the sealed record
    with its checksum, or the record so far (checksum null) while in progress."""
    if cutover.checksum:
        return {"record": cutover.record, "checksum": cutover.checksum}
    return {"record": build(cutover), "checksum": None}


def verify_export(data: dict) -> bool:
    """An exported record still matches the checksum it was exported with."""
    return bool(data.get("checksum")) and checksum(data["record"]) == data["checksum"]


def verify(cutover: Cutover) -> list[str]:
    """What is wrong with a sealed cutover's record; empty when it verifies."""
    if not cutover.checksum:
        return [f"cutover {cutover.name} is not sealed yet"]
    problems = []
    if checksum(cutover.record) != cutover.checksum:
        problems.append("the stored record does not match its checksum")
    if checksum(build(cutover)) != cutover.checksum:
        problems.append("the cutover's rows no longer match its sealed record")
    return problems
