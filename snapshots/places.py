"""Where a snapshot lives: a directory on this machine, or `gs://bucket/prefix`,
which every machine reads.

A snapshot in Cloud Storage is written, verified and restored through Django's
storage API (revassure.files.bucket_storage), by way of a copy on this machine:

- Taking it, the writer works in a staging directory here (its lock and its
  renames need a disk), first made what the bucket holds: the progress record
  and the files an earlier attempt finished, on whatever machine it ran. Each
  file the writer finishes is uploaded, then the progress record after it, so
  the bucket never lists a file it does not hold, and an attempt stopped
  anywhere (a deadline, a killed worker) is carried on by the next, anywhere.
  When the snapshot is whole, the objects no record vouches for are removed,
  then `manifest.json` is uploaded: a snapshot in a bucket is complete when
  its manifest is there, as on disk.
- Verifying or restoring it, its files are downloaded to a temporary directory
  and read there, by the same code as a directory's.

Two processes taking the same snapshot on one machine are kept apart by the
staging directory's lock; on two machines, by the snapshot's row (a worker
runs it only from pending or failed). `snapshot_firestore` run by hand on two
machines into one gs:// path at once is not guarded: do not.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from revassure import files as shared_files
from snapshots import files
from snapshots.writer import LOCK, MANIFEST, PROGRESS, Progress, SnapshotRefused

STAGING = "revassure-snapshots"  # under the temporary directory: a snapshot's local copy while it is taken


def is_remote(location: str | Path) -> bool:
    return shared_files.is_uri(str(location))


def normalized(location: str | Path) -> str:
    """How a snapshot's place is recorded: gs://bucket/prefix, or an absolute directory."""
    if not is_remote(location):
        return str(Path(location).resolve())
    bucket, prefix = shared_files.split_uri(str(location), object_required=False)
    if not prefix:
        raise shared_files.BadLocation(
            f"{location!r}: a snapshot needs a prefix of its own (gs://bucket/prefix)"
        )
    return f"{shared_files.PREFIX}{bucket}/{prefix}"


def inside(location: str | Path, name: str) -> str:
    """`name` inside a place (a new snapshot under SNAPSHOT_DIR)."""
    if is_remote(location):
        return f"{str(location).rstrip('/')}/{name}"
    return str(Path(location) / name)


def staging(location: str) -> Path:
    """Where a snapshot in a bucket is written on this machine (the same place every time)."""
    key = hashlib.sha256(location.encode()).hexdigest()[:24]
    return Path(tempfile.gettempdir()) / STAGING / key


def _ours(name: str) -> bool:
    return name.endswith((files.DATA, files.INDEX)) or name in (PROGRESS, MANIFEST)


class Bucket:
    """A snapshot's objects in Cloud Storage, named as its files on disk."""

    def __init__(self, location: str):
        bucket, prefix = shared_files.split_uri(normalized(location), object_required=False)
        self.location = location
        self.storage = shared_files.bucket_storage(bucket, prefix)

    def names(self) -> set[str]:
        with shared_files.cloud_errors(self.location):
            _, names = self.storage.listdir("")
        return set(names)

    def fetch(self, name: str, directory: Path) -> None:
        with shared_files.cloud_errors(f"{self.location}/{name}"):
            shared_files.download(self.storage, name, directory / name)

    def put(self, directory: Path, name: str) -> None:
        with shared_files.cloud_errors(f"{self.location}/{name}"):
            shared_files.upload(self.storage, directory / name, name)

    def remove(self, name: str) -> None:
        with shared_files.cloud_errors(f"{self.location}/{name}"):
            self.storage.delete(name)

    # -- the writer's mirror (writer.take calls these under its lock) -------------

    def pull(self, directory: Path) -> None:
        """Make the staging directory what the bucket holds (unless it is that already)."""
        names = self.names()
        if MANIFEST in names:
            raise SnapshotRefused(f"{self.location} already holds a finished snapshot; choose another place")
        strangers = sorted(name for name in names if not _ours(name))
        if strangers and PROGRESS not in names:
            raise SnapshotRefused(
                f"{self.location} holds files that are not a snapshot's ({', '.join(strangers[:3])}); "
                "choose an empty place"
            )
        local = directory / PROGRESS
        if PROGRESS in names:
            with tempfile.TemporaryDirectory() as scratch:
                self.fetch(PROGRESS, Path(scratch))
                remote = (Path(scratch) / PROGRESS).read_bytes()
            if local.exists() and local.read_bytes() == remote:
                return  # this machine took it last: its files are the bucket's
        for path in directory.iterdir():
            if path.name != LOCK:
                path.unlink()
        if PROGRESS not in names:
            return  # a fresh start (objects of no record are removed when it is whole)
        local.write_bytes(remote)
        progress = Progress.load(directory)
        assert progress is not None  # its progress record was just written there
        for entry in progress.files:
            index = entry["name"].removesuffix(files.DATA) + files.INDEX
            for name, sha256 in ((entry["name"], entry["sha256"]), (index, entry["index_sha256"])):
                if name in names:
                    self.fetch(name, directory)
                    if _sha256(directory / name) != sha256:  # replaced since: written again
                        (directory / name).unlink()

    def pushed(self, directory: Path, names: list[str]) -> None:
        """After the writer finished `names` (and recorded them): upload them, then the record."""
        for name in names:
            self.put(directory, name)
        if (directory / PROGRESS).exists():
            self.put(directory, PROGRESS)

    def finish(self, directory: Path, manifest: dict) -> None:
        """The snapshot is whole in the staging directory: the bucket gets exactly
        its files, the manifest last."""
        listed = set()
        for entry in manifest["files"]:
            listed |= {entry["name"], entry["name"].removesuffix(files.DATA) + files.INDEX}
        for name in self.names() - listed - {PROGRESS}:
            if _ours(name):  # an earlier attempt's; what is not a snapshot's is left alone
                self.remove(name)
        self.put(directory, MANIFEST)
        self.remove(PROGRESS)
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def readable(location: str | Path) -> Iterator[Path]:
    """A directory on this machine holding the snapshot at `location`: the
    directory itself, or for gs:// a download of its files, removed afterwards."""
    if not is_remote(location):
        yield Path(location)
        return
    bucket = Bucket(str(location))
    with tempfile.TemporaryDirectory(prefix="revassure-snapshot-") as scratch:
        for name in bucket.names():
            if name != PROGRESS and _ours(name):
                bucket.fetch(name, Path(scratch))
        yield Path(scratch)


def _sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as file:
        while piece := file.read(1 << 20):
            sha.update(piece)
    return sha.hexdigest()
