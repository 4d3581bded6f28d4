"""Files ops upload in the admin: checked before anything is queued (a wrong
file is refused at upload with the reason, not "completed" with every line
quarantined), kept where the workers read them, counted so progress can show
"1,700 of 5,000", and read back as event lines for the replay.

Two kinds: a JSON Lines export of provider events (one envelope per line) and
finance's reversal CSV (backfill.reversals turns its rows into such lines).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from backfill import reversals
from backfill.models import DataMigration, MigrationKind

HEAD_BYTES = 64 * 1024  # enough to see the first line of any sensible file


class BadUpload(ValueError):
    """The uploaded file is not what the form asks for; the message says why and what to do."""


def check(upload, kind: str) -> None:
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


def keep(upload, migration: DataMigration, folder: Path) -> Path:
    """Write the upload where the workers read it; its path (never shown to people)."""
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".csv" if migration.kind == MigrationKind.REVERSAL_CSV else ".jsonl"
    path = folder / f"migration-{migration.pk}{suffix}"
    upload.seek(0)
    with path.open("wb") as target:
        for piece in upload.chunks():
            target.write(piece)
    return path


def count_items(path: Path | str, kind: str) -> int:
    """How many items the file holds (its non-blank event lines, or CSV rows):
    the total progress is shown against."""
    with open_lines(path, kind) as lines:
        return sum(1 for line in lines if line.strip())


@contextmanager
def open_lines(path: Path | str, kind: str) -> Iterator:
    """The file's event lines, numbered as the file's lines: JSON Lines as they
    are, finance's CSV converted row by row (reversals.csv_to_event_lines)."""
    if kind == MigrationKind.REVERSAL_CSV:
        # utf-8-sig: Excel starts its UTF-8 CSV files with a byte order mark.
        with open(path, newline="", encoding="utf-8-sig", errors="replace") as rows:
            yield reversals.csv_to_event_lines(rows)
    else:
        with open(path, encoding="utf-8", errors="replace") as lines:
            yield lines


def stored_lines(migration: DataMigration):
    """open_lines for a migration's kept file."""
    return open_lines(migration.parameters["path"], migration.kind)
