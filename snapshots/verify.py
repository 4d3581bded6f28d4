"""Verifying a snapshot from its files alone (no Firestore).

Two questions, answered separately:

- Is it intact? Every file the manifest lists is there, with its SHA-256,
  size and line count; every line matches its digest in the file's index, so
  a changed, missing or added line is named by file and line, even inside
  compressed data; no file is there that the manifest does not list; the
  totals add up. Any failure is an error, and `ok` is False.
- Does the data hold? For every wallet, points == the sum of its ledger
  amounts, all integers. A wallet that breaks it is a violation: a finding
  about the data as it was in Firestore, faithfully kept, not damage to the
  snapshot. Violations never make `ok` False.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from snapshots import files
from snapshots.manifest_checks import manifest_problems
from snapshots.writer import FORMAT, LOCK, MANIFEST, Totals, integer

PROBLEMS_PER_FILE = 20  # beyond these, a file's problems are counted, not listed
DATA_KINDS = {"int", "float", "str", "bool", "null", "time", "bytes", "ref", "geo", "array", "map"}


@dataclass(frozen=True)
class Violation:
    uid: str
    wallet_points: int | None  # None when the points are not an integer
    ledger_sum: int  # the sum of the integer amounts
    delta: int | None  # points - ledger sum; None when either side is malformed
    reason: str

    def as_json(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if key != "reason"}


@dataclass
class Result:
    ok: bool = True
    wallets: int = 0
    entries: int = 0
    documents: int = 0
    violations: list[Violation] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    manifest_sha256: str = ""
    files: list[str] = field(default_factory=list)  # the data files the manifest lists, checked plain

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "wallets": self.wallets,
            "entries": self.entries,
            "violations": [violation.as_json() for violation in self.violations],
            "errors": self.errors,
        }


def verify(path: Path, *, manifest_sha256: str | None = None) -> Result:
    """Check a snapshot directory against its manifest, and every wallet against its ledger.

    `manifest_sha256`, when given (as recorded when the snapshot was taken),
    must be the manifest's own: the manifest is then vouched for too.
    """
    result = Result()
    manifest = _manifest(Path(path), manifest_sha256, result)
    if manifest is not None:
        result.files = [entry["name"] for entry in manifest["files"]]
        listed = set()
        for entry in manifest["files"]:
            listed |= {entry["name"], _index_name(entry)}
        for extra in sorted(p.name for p in Path(path).iterdir() if _unlisted(p.name, listed)):
            result.errors.append(f"{extra}: not in the manifest (a file added to the snapshot)")
        totals = Totals()
        for entry in manifest["files"]:
            _check_file(Path(path), entry, result, totals)
        for name, found in asdict(totals).items():
            if found != manifest.get(name) and not result.errors:
                result.errors.append(f"manifest.json: {name} is {manifest.get(name)}, the files hold {found}")
        result.wallets, result.entries, result.documents = totals.wallets, totals.entries, totals.documents
    result.ok = not result.errors
    return result


def _manifest(path: Path, expected_sha256: str | None, result: Result) -> dict[str, Any] | None:
    if not path.is_dir():
        result.errors.append(f"{path}: no such directory")
        return None
    try:
        body = (path / MANIFEST).read_bytes()
    except FileNotFoundError:
        result.errors.append(f"{MANIFEST}: absent (the snapshot never finished, or this is not a snapshot)")
        return None
    except OSError as exc:
        result.errors.append(f"{MANIFEST}: cannot be read ({exc.strerror or exc})")
        return None
    result.manifest_sha256 = hashlib.sha256(body).hexdigest()
    if expected_sha256 and result.manifest_sha256 != expected_sha256:
        result.errors.append(
            f"{MANIFEST}: changed since the snapshot was taken (SHA-256 {result.manifest_sha256[:16]}…, "
            f"recorded {expected_sha256[:16]}…)"
        )
    try:
        manifest = json.loads(body)
    except ValueError as exc:
        result.errors.append(f"{MANIFEST}: not JSON ({exc})")
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        result.errors.append(f"{MANIFEST}: format {found!r} is not {FORMAT!r}")
        return None
    problems = manifest_problems(manifest)
    if problems:
        result.errors += [f"{MANIFEST}: {problem}" for problem in problems]
        return None
    return manifest


def _index_name(entry: dict[str, Any]) -> str:
    return entry["name"].removesuffix(files.DATA) + files.INDEX


def _unlisted(name: str, listed: set[str]) -> bool:
    return name not in listed and name not in (MANIFEST, LOCK) and name.endswith((files.DATA, files.INDEX))


class _Peek:
    """An iterator one can look a few items ahead in (None past its end)."""

    def __init__(self, items: Iterator):
        self.items = items
        self.ahead: list = []

    def peek(self, n: int = 0) -> Any:
        while len(self.ahead) <= n:
            item = next(self.items, None)
            if item is None:
                return None
            self.ahead.append(item)
        return self.ahead[n]

    def take(self) -> Any:
        item = self.peek()
        if item is not None:
            self.ahead.pop(0)
        return item


class _Problems:
    """One file's problems: the first PROBLEMS_PER_FILE listed, the rest counted."""

    def __init__(self, result: Result, name: str):
        self.result, self.name, self.count = result, name, 0

    def add(self, text: str) -> None:
        """A problem at a line ("line 17: changed") or of the whole file."""
        self.count += 1
        if self.count <= PROBLEMS_PER_FILE:
            self.result.errors.append(
                f"{self.name} {text}" if text.startswith("line ") else f"{self.name}: {text}"
            )

    def close(self) -> None:
        if self.count > PROBLEMS_PER_FILE:
            self.result.errors.append(
                f"{self.name}: {self.count - PROBLEMS_PER_FILE} more problems not listed"
            )


def _check_file(path: Path, entry: dict[str, Any], result: Result, totals: Totals) -> None:
    name, index_name = entry["name"], _index_name(entry)
    data = path / name
    for one in (name, index_name):
        if (path / one).is_symlink():
            result.errors.append(f"{one}: a symbolic link, not a file of the snapshot")
            return
    if not data.exists():
        result.errors.append(f"{name}: absent (the manifest lists it with {entry['lines']} lines)")
        return
    try:
        _check_contents(path, entry, result, totals)
    except OSError as exc:
        result.errors.append(f"{name}: cannot be read ({exc.strerror or exc})")


def _check_contents(path: Path, entry: dict[str, Any], result: Result, totals: Totals) -> None:
    name, index_name = entry["name"], _index_name(entry)
    data = path / name
    problems = _Problems(result, name)
    reading, index_reading = files.Reading(), files.Reading()
    lines = _Peek((line, files.digest(line)) for line in files.read_lines(data, reading))
    index = path / index_name
    if not index.exists():
        result.errors.append(f"{index_name}: absent, so {name}'s lines cannot be checked one by one")
        expected = None
    else:
        expected = _Peek(files.read_index(index, index_reading))
    content = _Content(name, problems)
    try:
        if expected is None:
            for number, (line, _) in enumerate(iter(lines.take, None), start=1):
                content.line(number, line)
        else:
            for number, line in _matched(lines, expected, problems):
                content.line(number, line)
    except files.Damaged as exc:
        if exc.line <= entry["lines"]:
            problems.add(f"line {exc.line}: cannot be read: {exc.reason}")
        else:
            problems.add(f"after its last line ({exc.line - 1}): {exc.reason}")
    else:
        if reading.trailing:
            problems.add(f"at its end: {reading.trailing}")
        if reading.sha256 != entry["sha256"] and not problems.count:
            problems.add("its bytes differ from the manifest's SHA-256 although every line matches")
        if expected is None and content.number != entry["lines"]:
            problems.add(f"{content.number} lines, the manifest says {entry['lines']}")
    content.finish()
    if not problems.count:
        for text in content.misplaced:
            problems.add(text)
    if expected is not None and index_reading.sha256 and index_reading.sha256 != entry["index_sha256"]:
        result.errors.append(f"{index_name}: changed (its SHA-256 is not the manifest's)")
    problems.close()
    if not problems.count:
        found = content.totals
        for key in (f.name for f in fields(Totals)):
            if key in entry and getattr(found, key) != entry[key]:
                result.errors.append(
                    f"{name}: {key} is {getattr(found, key)}, the manifest says {entry[key]}"
                )
    result.violations.extend(content.violations)
    for key in (f.name for f in fields(Totals)):
        setattr(totals, key, getattr(totals, key) + getattr(content.totals, key))


def _matched(lines: _Peek, expected: _Peek, problems: _Problems) -> Iterator[tuple[int, bytes]]:
    """The lines that match the index, numbered; each line changed, missing or
    added is a problem named by its number (in the file as it is, for a line
    that is there; as the manifest has it, for a missing one)."""
    number = listed = 0
    while True:
        line, wanted = lines.peek(), expected.peek()
        if line is None and wanted is None:
            return
        if line is None:
            missing = sum(1 for _ in iter(expected.take, None))
            more = f" (and {missing - 1} more)" if missing > 1 else ""
            problems.add(f"line {listed + 1}: missing{more}: the file ends after line {number}")
            return
        if wanted is None:
            added = sum(1 for _ in iter(lines.take, None))
            more = f" (and {added - 1} more)" if added > 1 else ""
            problems.add(f"line {number + 1}: added after the manifest's last line{more}")
            return
        if line[1] == wanted:
            number, listed = number + 1, listed + 1
            yield number, lines.take()[0]
            expected.take()
        elif expected.peek(1) == line[1]:
            listed += 1
            problems.add(f"line {listed}: missing (the manifest's next line follows line {number})")
            expected.take()
        elif (following := lines.peek(1)) is not None and following[1] == wanted:
            number += 1
            problems.add(f"line {number}: added (not in the manifest)")
            lines.take()
        else:
            number, listed = number + 1, listed + 1
            problems.add(f"line {number}: changed")
            lines.take()
            expected.take()


class _Content:
    """The documents of one file, line by line: totals, and each wallet against its ledger."""

    def __init__(self, name: str, problems: _Problems):
        self.name, self.problems = name, problems
        self.totals = Totals()
        self.violations: list[Violation] = []
        self.number = 0
        self.uid: str | None = None
        self.points: Any = None
        self.ledger_sum = 0
        self.malformed: list[str] = []
        # Entries away from their wallet: told only when no line is damaged (a
        # missing wallet line moves its entries under the wallet before).
        self.misplaced: list[str] = []

    def line(self, number: int, line: bytes) -> None:
        self.number = number
        try:
            document = json.loads(line)
            path, document_fields = document["path"], document["fields"]
            parts = path.split("/")
            if len(parts) % 2 or not isinstance(document_fields, dict):
                raise ValueError(path)
        except (ValueError, KeyError, TypeError, AttributeError):
            self.problems.add(f"line {number}: not a snapshot document")
            return
        self.totals.documents += 1
        if parts[0] != "wallets":
            return
        if len(parts) == 2:
            self._close_wallet()
            self.uid, self.points = parts[1], document_fields.get("points")
            self.totals.wallets += 1
            self.totals.points_total += integer(self.points) or 0
        elif len(parts) == 4 and parts[2] == "ledger":
            self.totals.entries += 1
            if parts[1] != self.uid:
                self.misplaced.append(f"line {number}: a ledger entry of {parts[1]} away from its wallet")
                return
            amount = integer(document_fields.get("amount"))
            if amount is None:
                self.malformed.append(
                    f"entry {parts[3]} has {_describe(document_fields.get('amount'))} amount"
                )
            else:
                self.ledger_sum += amount
                self.totals.ledger_total += amount

    def finish(self) -> None:
        self._close_wallet()

    def _close_wallet(self) -> None:
        if self.uid is None:
            return
        points = integer(self.points)
        reasons = []
        if points is None:
            reasons.append(
                "it has no points" if self.points is None else f"its points are {_describe(self.points)}"
            )
        reasons += self.malformed
        if reasons:
            self.violations.append(Violation(self.uid, points, self.ledger_sum, None, "; ".join(reasons)))
        elif points != self.ledger_sum:
            assert points is not None  # no points: a reason above
            self.violations.append(
                Violation(
                    self.uid,
                    points,
                    self.ledger_sum,
                    points - self.ledger_sum,
                    f"points {points} but the ledger sums to {self.ledger_sum}",
                )
            )
        self.uid, self.points, self.ledger_sum, self.malformed = None, None, 0, []


def _describe(tagged: Any) -> str:
    """A malformed value in words: "a string '120'", "a float 12.5", "no"."""
    if tagged is None:
        return "no"
    if not isinstance(tagged, dict) or len(tagged) != 1 or next(iter(tagged)) not in DATA_KINDS:
        return "an unreadable"
    ((kind, value),) = tagged.items()
    if kind == "str":
        return f"a string {value!r}"
    if kind == "float":
        return f"a float {value}"
    if kind == "null":
        return "a null"
    return f"a {kind} {json.dumps(value)}"
