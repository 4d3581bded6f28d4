"""Files ops upload in the admin: checked before anything is queued (a wrong
file is refused at upload with the reason, not "completed" with every line
quarantined), kept where every worker reads them (the shared storage:
Cloud Storage in production), counted so progress can show
"1,700 of 5,000", and read back as event lines for the replay.

Two kinds: a JSON Lines export of provider events (one envelope per line) and
finance's reversal CSV (backfill.reversals turns its rows into such lines).
"""

from __future__ import annotations

import csv
import io
import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.core.files import File

from backfill import plan_approval, reversals
from backfill.models import DataMigration, MigrationKind, MigrationSource
from revassure import files
from revassure.refusals import Refused

HEAD_BYTES = 64 * 1024  # enough to see the first line of any sensible file
FOLDER = "backfill"  # in the shared storage


class BadUpload(Refused, ValueError):
    """The uploaded file is not what the form asks for; the message says why and what to do."""


def check(upload: File, kind: str) -> None:
    """Refuse a file that cannot be the kind asked for, from its first line."""
    upload.seek(0)
    head = upload.read(HEAD_BYTES).decode("utf-8", errors="replace").removeprefix(reversals.BOM)
    upload.seek(0)
    first = next((line.strip() for line in head.splitlines() if line.strip()), None)
    if first is None:
        raise BadUpload("the file is empty")
    if kind == MigrationKind.REVERSAL_CSV:
        _check_csv_header(first)
    elif not first.startswith("{"):
        hint = (
            "; it looks like finance's reversal CSV: upload it with “Backfill reversals from a CSV”"
            if _looks_like_reversal_csv(first)
            else ""
        )
        raise BadUpload(
            "this is not a JSON Lines export of provider events: its first line is not a JSON object "
            f"(it starts {_shown(first)}){hint}"
        )


def _check_csv_header(first: str) -> None:
    if first.startswith("{"):
        raise BadUpload(
            "this is a JSON Lines export, not finance's reversal CSV: upload it with “Replay an export”"
        )
    header = {name.strip() for name in next(csv.reader([first]), [])}
    missing = [name for name in reversals.COLUMNS if name not in header]
    if missing:
        raise BadUpload(
            f"the CSV's first line lacks the columns {', '.join(missing)} "
            f"(expected: {','.join(reversals.COLUMNS)})"
        )


def _looks_like_reversal_csv(first: str) -> bool:
    header = {name.strip() for name in first.split(",")}
    return {"payment_id", "user_id", "points"} <= header


def _shown(text: str, limit: int = 40) -> str:
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return json.dumps(text, ensure_ascii=False)


def keep(upload: File, migration: DataMigration) -> str:
    """Keep the upload where every worker reads it (the shared storage: Cloud
    Storage in production, revassure.files); its stored name (never shown to people)."""
    suffix = ".csv" if migration.kind == MigrationKind.REVERSAL_CSV else ".jsonl"
    return files.keep(upload, f"{FOLDER}/migration-{migration.pk}-{secrets.token_hex(6)}{suffix}")


def named_points(path: Path | str, kind: str) -> int:
    """The points the file's events name (plan_approval.named_points): what a
    real run of it not bound to a plan is measured by."""
    with open_lines(path, kind) as lines:
        return plan_approval.named_points(line for line in lines if line.strip())


def measure_upload(upload: File, kind: str) -> tuple[int, int]:
    """How many items an uploaded file holds (its non-blank event lines, or CSV
    rows: the total progress is shown against) and the points they name, read
    where it was uploaded (before it is kept)."""
    upload.seek(0)
    options = _TEXT[kind == MigrationKind.REVERSAL_CSV]
    assert upload.file is not None  # an upload holds its content
    text = io.TextIOWrapper(
        upload.file, encoding=options["encoding"], errors=options["errors"], newline=options.get("newline")
    )
    try:
        lines = reversals.csv_to_event_lines(text) if kind == MigrationKind.REVERSAL_CSV else text
        items = named = 0
        for line in lines:
            if line.strip():
                items += 1
                named += plan_approval.named_points([line])
        return items, named
    finally:
        text.detach()  # the upload stays open for keep
        upload.seek(0)


# How files are read as text: finance's CSV in utf-8-sig (Excel starts its UTF-8
# CSV files with a byte order mark), JSON Lines as UTF-8; bad bytes become U+FFFD.
_TEXT: dict[bool, dict[str, str]] = {
    True: {"newline": "", "encoding": "utf-8-sig", "errors": "replace"},
    False: {"encoding": "utf-8", "errors": "replace"},
}


@contextmanager
def open_lines(path: Path | str, kind: str) -> Iterator:
    """The file's event lines, numbered as the file's lines: JSON Lines as they
    are, finance's CSV converted row by row (reversals.csv_to_event_lines)."""
    csv_file = kind == MigrationKind.REVERSAL_CSV
    options = _TEXT[csv_file]
    with open(
        path, encoding=options["encoding"], errors=options["errors"], newline=options.get("newline")
    ) as lines:
        yield reversals.csv_to_event_lines(lines) if csv_file else lines


def is_kept(migration: DataMigration) -> bool:
    """Whether a migration's file is still where its workers read it."""
    path = migration.parameters.get("path", "")
    if not path:
        return False
    if _on_this_machine(migration):
        return Path(path).is_file()
    return files.shared().exists(path)


@contextmanager
def stored_lines(migration: DataMigration) -> Iterator:
    """open_lines for a migration's file: an upload kept in the shared storage
    (copied to this machine for the run's length), or a file named on this
    machine's command line. FileNotFoundError when it is no longer kept."""
    path = migration.parameters["path"]
    if _on_this_machine(migration):
        with open_lines(path, migration.kind) as lines:
            yield lines
        return
    with files.local_copy(files.shared(), path) as local, open_lines(local, migration.kind) as lines:
        yield lines


def _on_this_machine(migration: DataMigration) -> bool:
    # A command's file, or an upload kept before the shared storage (an absolute path).
    return migration.source != MigrationSource.UPLOAD or Path(migration.parameters["path"]).is_absolute()
