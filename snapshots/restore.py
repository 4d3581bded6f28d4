"""Loading a snapshot into a Firestore project: the guards, then the documents.

A restore is how a cutover is rehearsed on TEST, so it must never touch
production, never load damaged data, and never mix a snapshot into data
already there. Each guard refuses before anything is written:

1. the project is listed in RESTORE_ALLOWED_PROJECTS and is not
   FIRESTORE_PRODUCTION_PROJECT;
2. the snapshot verifies intact (violations in the data are no reason to
   refuse: the snapshot reproduces the data as it was);
3. the target holds none of the snapshot's collections, unless `replace`:
   then every document under them is deleted first (subcollections of
   parents that no longer exist too), so the target ends up holding exactly
   the snapshot.

Documents are written as they were (same paths, same fields, same types),
500 to a commit; writing one twice changes nothing, so a restore that failed
half-way is completed by running it again with `replace`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from revassure.firestore import FirestoreGateway
from revassure.firestore.snapshot_values import SnapshotDocument
from revassure.refusals import Refused
from snapshots import files
from snapshots.manifest_checks import name_problem
from snapshots.verify import Result, verify
from snapshots.writer import MANIFEST


class RestoreRefused(Refused):
    """Nothing was written, for the reason given."""


@dataclass(frozen=True)
class Loaded:
    deleted: int
    written: int
    verification: Result


def refusal_for_project(project: str) -> str:
    """Why a restore into `project` is not allowed; "" when it is."""
    production = settings.FIRESTORE_PRODUCTION_PROJECT
    allowed = settings.RESTORE_ALLOWED_PROJECTS
    if not project:
        return "no target project given"
    if production and project == production:
        return (
            f"{project} is the production project (FIRESTORE_PRODUCTION_PROJECT): "
            "snapshots are never restored there"
        )
    if project not in allowed:
        listed = ", ".join(allowed) if allowed else "none"
        return f"{project} is not in RESTORE_ALLOWED_PROJECTS (allowed: {listed})"
    return ""


def load(path: Path, *, gateway: FirestoreGateway, replace: bool = False) -> Loaded:
    """Check every guard, then write the snapshot at `path` into the gateway's project."""
    refusal = refusal_for_project(gateway.project)
    if refusal:
        raise RestoreRefused(refusal)
    result = verify(path)
    if not result.ok:
        shown = "; ".join(result.errors[:3]) + (
            f"; and {len(result.errors) - 3} more" if len(result.errors) > 3 else ""
        )
        raise RestoreRefused(f"the snapshot is not intact: {shown}")
    if not replace and gateway.holds_documents():
        raise RestoreRefused(
            f"{gateway.project} already holds documents; restore with --replace to delete them first"
        )
    loading = documents(path, result.files)
    deleted = gateway.delete_documents(gateway.snapshot_paths()) if replace else 0
    written = gateway.write_documents(loading)
    return Loaded(deleted=deleted, written=written, verification=result)


def documents(path: Path, names: list[str]) -> Iterator[SnapshotDocument]:
    """Every document of a snapshot's data files `names` (as its verification
    found them in the manifest), file after file. A name that is not a plain
    file name inside the snapshot is refused before anything is read."""
    for name in names:
        refusal = name_problem(name)
        if refusal:
            raise RestoreRefused(f"{MANIFEST}: file name {name!r} {refusal}")
    return (json.loads(line) for name in names for line in files.read_lines(path / name, files.Reading()))
