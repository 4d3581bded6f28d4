"""Taking a snapshot into a directory: the files, the progress record, the manifest.

Layout of a snapshot directory:

    wallets-000001.jsonl.gz   each wallet followed by its ledger entries,
    wallets-000001.lines      WALLETS_PER_PART wallets a file (and its index)
    ...
    reconciliationReports.jsonl.gz (+ .lines)   each report, then its violations
    settlementReports.jsonl.gz (+ .lines)       each report, then its rows
    dataMigrations, auditLog, config, ledgerIdentities .jsonl.gz (+ .lines)
    (the collections are those model.COLLECTIONS declares in_snapshots)
    manifest.json             written last: the snapshot is complete when it exists

While a snapshot is taken, `progress.jsonl` records each finished file, one
line each, after a first line naming the project and the read time. A
snapshot that stopped (a crash, a killed worker, a deadline) is completed by
taking it again into the same directory: the finished files are kept, a
half-written one is written again, and the wallet stream picks up after the
last wallet kept. When that is not possible (the wallets changed in between
on a server that cannot resume by cursor, or Firestore no longer keeps the
versions of the snapshot's read time), it starts over, and says why.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from revassure.firestore import WALLETS, FirestoreGateway
from revassure.firestore.snapshots import ROOTS, CollectionChanged, Position
from revassure.refusals import Refused
from snapshots import files

log = logging.getLogger(__name__)

FORMAT = "revassure-snapshot/1"
MANIFEST = "manifest.json"
PROGRESS = "progress.jsonl"
LOCK = ".lock"
WALLETS_PER_PART = 1000
# Firestore keeps past versions for an hour (without point-in-time recovery):
# a snapshot picked up later than this starts over at a new read time.
READ_TIME_KEPT = timedelta(minutes=50)


class SnapshotRefused(Refused):
    """The directory cannot take this snapshot (it holds something else, or is busy)."""


class _StartOver(Exception):
    pass


@dataclass
class Totals:
    wallets: int = 0
    entries: int = 0
    documents: int = 0
    points_total: int = 0  # the sum of the wallets' integer points
    ledger_total: int = 0  # the sum of the ledger entries' integer amounts

    @classmethod
    def of(cls, entries: list[dict[str, Any]]) -> Totals:
        return cls(**{f.name: sum(entry[f.name] for entry in entries) for f in fields(cls)})


def integer(tagged: Any) -> int | None:
    """The integer in a tagged value; None when the value is not a Firestore integer."""
    if isinstance(tagged, dict) and "int" in tagged:
        try:
            return int(tagged["int"])
        except (TypeError, ValueError):
            return None
    return None


@dataclass
class Progress:
    """What a snapshot in a directory has finished so far (progress.jsonl)."""

    project: str
    read_time: str  # RFC 3339, the server's clock
    started: str
    seconds: float = 0.0  # spent taking it, over every attempt
    files: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def begin(cls, directory: Path, project: str, read_time: str) -> Progress:
        progress = cls(project, read_time, datetime.now(UTC).isoformat(timespec="seconds"))
        header = {"project": project, "read_time": read_time, "started": progress.started}
        _write_atomically(directory / PROGRESS, (json.dumps(header) + "\n").encode())
        return progress

    @classmethod
    def load(cls, directory: Path) -> Progress | None:
        path = directory / PROGRESS
        if not path.exists():
            return None
        lines = path.read_bytes().split(b"\n")
        progress = cls(**json.loads(lines[0]))
        for line in lines[1:]:
            try:
                record = json.loads(line)
            except ValueError:
                break  # a record cut short by a crash: its file is written again
            if "seconds" in record:
                progress.seconds += record["seconds"]
            else:
                progress.files.append(record)
        return progress

    def record(self, directory: Path, record: dict[str, Any]) -> None:
        """Append one record (a finished file, or the seconds an attempt took)."""
        with (directory / PROGRESS).open("ab") as file:
            file.write(json.dumps(record, sort_keys=True).encode() + b"\n")
            file.flush()
            os.fsync(file.fileno())
        if "seconds" in record:
            self.seconds += record["seconds"]
        else:
            self.files.append(record)

    def wallet_parts(self) -> list[dict[str, Any]]:
        return [entry for entry in self.files if entry["holds"] == WALLETS]

    def timestamp(self) -> datetime:
        return datetime.fromisoformat(self.read_time.replace("Z", "+00:00"))


@dataclass
class Outcome:
    finished: bool  # False: stopped at the deadline; taking it again carries on
    manifest: dict[str, Any] | None = None
    manifest_sha256: str = ""
    started_over: str = ""  # why the files of an earlier attempt were dropped, if they were


class Mirror(Protocol):
    """A copy of the directory elsewhere (places.Bucket: Cloud Storage), kept in step."""

    def pull(self, directory: Path) -> None: ...  # before anything: the directory becomes the copy

    def pushed(self, directory: Path, names: list[str]) -> None: ...  # after files are finished and recorded

    def finish(self, directory: Path, manifest: dict[str, Any]) -> None: ...  # the manifest is written


def take(
    directory: Path,
    *,
    gateway: FirestoreGateway,
    wallets_per_part: int = WALLETS_PER_PART,
    deadline: float | None = None,
    on_progress: Callable[[int], None] | None = None,
    mirror: Mirror | None = None,
) -> Outcome:
    """Take (or complete) a snapshot of the gateway's project into `directory`.

    Once `deadline` (time.monotonic()) has passed it stops after the file in
    hand: the outcome is then unfinished, and taking it again carries on.
    `on_progress(wallets done)` is called after each file of wallets. With a
    `mirror`, the directory is a staging copy of a snapshot kept elsewhere.
    """
    directory.mkdir(parents=True, exist_ok=True)
    with _locked(directory):
        if mirror is not None:
            mirror.pull(directory)
        if (directory / MANIFEST).exists():
            raise SnapshotRefused(f"{directory} already holds a finished snapshot; choose another directory")
        progress, started_over = _progress_to_continue(directory, gateway)
        attempt_started = time.monotonic()
        write = functools.partial(
            _write_files,
            directory,
            gateway=gateway,
            per_part=wallets_per_part,
            deadline=deadline,
            on_progress=on_progress,
            mirror=mirror,
        )
        try:
            try:
                finished = write(progress)
            except _StartOver as exc:
                started_over = str(exc)
                log.warning(
                    "snapshot starts over", extra={"directory": str(directory), "reason": started_over}
                )
                progress = _fresh(directory, gateway)
                finished = write(progress)
        finally:
            progress.record(directory, {"seconds": round(time.monotonic() - attempt_started, 3)})
            if mirror is not None:
                mirror.pushed(directory, [])
        if not finished:
            return Outcome(finished=False, started_over=started_over)
        manifest = _manifest(progress)
        sha256 = _write_atomically(directory / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
        (directory / PROGRESS).unlink()
        if mirror is not None:
            mirror.finish(directory, manifest)
        return Outcome(finished=True, manifest=manifest, manifest_sha256=sha256, started_over=started_over)


def _progress_to_continue(directory: Path, gateway: FirestoreGateway) -> tuple[Progress, str]:
    """The progress of an earlier attempt when it can be carried on; else a fresh
    start, and why the earlier attempt's files were dropped."""
    earlier = Progress.load(directory)
    if earlier is None:
        strangers = sorted(p.name for p in directory.iterdir() if p.name != LOCK and not _ours(p.name))
        if strangers:
            raise SnapshotRefused(
                f"{directory} holds files that are not a snapshot's ({', '.join(strangers[:3])}); "
                "choose an empty directory"
            )
        leftovers = any(_ours(p.name) for p in directory.iterdir())
        return _fresh(directory, gateway), "files without a progress record" if leftovers else ""
    if earlier.project != gateway.project:
        raise SnapshotRefused(
            f"{directory} holds an unfinished snapshot of project {earlier.project}, not {gateway.project}"
        )
    age = datetime.now(UTC) - datetime.fromisoformat(earlier.read_time.replace("Z", "+00:00"))
    gone = [entry["name"] for entry in earlier.files if not (directory / entry["name"]).exists()]
    reason = ""
    if age > READ_TIME_KEPT:
        reason = f"its read time is {age.total_seconds() / 60:.0f} minutes old, older than Firestore keeps"
    elif gone:
        reason = f"its finished file {gone[0]} is gone"
    if reason:
        return _fresh(directory, gateway), reason
    # Drop what no record vouches for: a half-written file, or one finished just
    # before its record could be written (it is written again).
    kept = set()
    for entry in earlier.files:
        kept |= {entry["name"], entry["name"].removesuffix(files.DATA) + files.INDEX}
    for path in directory.iterdir():
        if _ours(path.name) and path.name not in kept:
            path.unlink()
    return earlier, ""


def _fresh(directory: Path, gateway: FirestoreGateway) -> Progress:
    for path in directory.iterdir():
        if _ours(path.name) or path.name == PROGRESS:
            path.unlink()
    return Progress.begin(
        directory, gateway.project, gateway.snapshot_read_time().isoformat().replace("+00:00", "Z")
    )


def _ours(name: str) -> bool:
    return name.endswith((files.DATA, files.INDEX, files.PARTIAL))


def _write_files(
    directory: Path, progress: Progress, *, gateway, per_part: int, deadline, on_progress, mirror
) -> bool:
    read_time = progress.timestamp()
    done = {entry["holds"] for entry in progress.files}

    def finished(entry: dict[str, Any]) -> None:
        progress.record(directory, entry)
        if mirror is not None:
            mirror.pushed(directory, [entry["name"], entry["name"].removesuffix(files.DATA) + files.INDEX])

    if done <= {WALLETS}:  # the wallets are not finished yet
        parts = [part for part in progress.wallet_parts() if part["wallets"]]
        start = None
        if parts:
            start = Position(parts[0]["first"], parts[-1]["last"], Totals.of(parts).wallets)
        wallets = gateway.snapshot_wallets(read_time=read_time, start=start)
        try:
            first = next(wallets, None)
        except CollectionChanged as exc:
            raise _StartOver(f"the wallets changed since it stopped ({exc})") from exc
        for part in _parts(first, wallets, per_part):
            stem = f"{WALLETS}-{len(progress.wallet_parts()) + 1:06d}"
            finished(_write_file(directory, stem, part))
            if on_progress:
                on_progress(Totals.of(progress.wallet_parts()).wallets)
            if deadline is not None and time.monotonic() > deadline:
                return False
        if not progress.wallet_parts():
            # No wallets at all: one empty file still, so the layout never varies.
            finished(_write_file(directory, f"{WALLETS}-000001", iter(())))
    for root in ROOTS[1:]:
        if root not in done:
            documents = (
                (document, ()) for document in gateway.snapshot_collection(root, read_time=read_time)
            )
            finished(_write_file(directory, root, documents, holds=root))
    return True


def _parts(first, wallets: Iterator, per_part: int) -> Iterator[Iterator]:
    """The wallet stream, whose first item is `first`, cut into parts of `per_part`
    wallets (each part is read to its end before the next one starts)."""
    head = [first] if first is not None else []

    def part():
        yield head.pop()
        for _ in range(per_part - 1):
            item = next(wallets, None)
            if item is None:
                return
            yield item
        following = next(wallets, None)
        if following is not None:
            head.append(following)

    while head:
        yield part()


def _write_file(directory: Path, stem: str, items, *, holds: str = WALLETS) -> dict[str, Any]:
    """Write one file from (document, children) pairs; its manifest entry."""
    writer = files.FileWriter(directory, stem)
    totals = Totals()
    first = last = None
    try:
        for document, children in items:
            writer.write(document)
            totals.documents += 1 + len(children)
            if holds == WALLETS:
                totals.wallets += 1
                totals.points_total += integer(document["fields"].get("points")) or 0
                first, last = first or document["path"], document["path"]
                totals.entries += len(children)
            for child in children:
                writer.write(child)
                if holds == WALLETS:
                    totals.ledger_total += integer(child["fields"].get("amount")) or 0
        record = writer.close()
    except BaseException:
        writer.abandon()
        raise
    entry = {"holds": holds, **record.as_manifest(), **asdict(totals)}
    if holds == WALLETS:
        entry.update(first=first, last=last)
    return entry


def _manifest(progress: Progress) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "project": progress.project,
        "read_time": progress.read_time,
        "started": progress.started,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(progress.seconds, 3),
        **asdict(Totals.of(progress.files)),
        "files": progress.files,
    }


def _write_atomically(path: Path, body: bytes) -> str:
    """Write a file whole or not at all (a temporary file renamed over it); its SHA-256."""
    partial = path.with_name(path.name + files.PARTIAL)
    with partial.open("wb") as file:
        file.write(body)
        file.flush()
        os.fsync(file.fileno())
    os.replace(partial, path)
    return hashlib.sha256(body).hexdigest()


def busy(directory: Path) -> bool:
    """Whether a process is writing into the directory now (it holds the lock)."""
    lock = directory / LOCK
    if not lock.exists():
        return False
    with lock.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


@contextmanager
def _locked(directory: Path):
    """One process at a time writes into a snapshot directory."""
    with (directory / LOCK).open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise SnapshotRefused(f"another process is writing a snapshot into {directory}") from exc
        yield
