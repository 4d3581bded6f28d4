"""What makes a snapshot's manifest usable before its files are checked one by one (snapshots/verify.py):
`files` a list of entries with the right fields and types, each named as a plain data file inside the
snapshot, listed once; restore (snapshots/restore.py) asks the same of each name it reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from snapshots import files

# What verify._check_file reads of each file entry, and its type.
FILE_FIELDS = {"name": str, "sha256": str, "lines": int, "index_sha256": str}


def manifest_problems(manifest: dict[str, Any]) -> list[str]:
    """What makes a manifest unusable: `files` not a list of entries, each with
    FILE_FIELDS of the right types and a name that is a plain file name inside
    the snapshot, listed once. [] when it can be checked file by file."""
    entries = manifest.get("files")
    if entries is None:
        return ['no "files" (the list of data files)']
    if not isinstance(entries, list):
        return [f'"files" is {_kind(entries)}, not a list of files']
    problems, seen = [], set()
    for number, entry in enumerate(entries):
        where = f"files[{number}]"
        if not isinstance(entry, dict):
            problems.append(f"{where} is {_kind(entry)}, not an object with a name and SHA-256")
            continue
        for key, kind in FILE_FIELDS.items():
            value = entry.get(key)
            if key not in entry:
                problems.append(f'{where} has no "{key}"')
            elif (
                not isinstance(value, kind)
                or isinstance(value, bool)
                or (isinstance(value, int) and value < 0)
            ):
                problems.append(
                    f'{where} "{key}" is {_kind(value)}, not {"a count" if kind is int else "text"}'
                )
        name = entry.get("name")
        if isinstance(name, str):
            refusal = name_problem(name)
            if refusal:
                problems.append(f"{where} name {name!r} {refusal}")
            elif name in seen:
                problems.append(f"{where} name {name!r} is listed twice")
            seen.add(name)
    return problems


def name_problem(name: str) -> str:
    """Why `name` is not a plain name of a data file inside the snapshot
    directory (a path, an absolute name, a name that climbs out); "" when it is."""
    if "/" in name or "\\" in name or "\0" in name or Path(name).name != name or name in (".", ".."):
        return "is not a plain file name inside the snapshot (no directories, no absolute paths)"
    if not name.endswith(files.DATA) or name == files.DATA:
        return f"is not the name of a data file (NAME{files.DATA})"
    return ""


def _kind(value: Any) -> str:
    if isinstance(value, str):
        return f"text ({value[:40]!r})"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return f"the number {value}"
    return "a list" if isinstance(value, list) else "an object"
