"""Statement files: digests, uploads kept for the workers, and Cloud Storage.

An admin upload is kept in the shared storage (revassure.files: Cloud Storage
in production), so the worker that matches it may run on any machine; its
run's `path` is then the stored name. The scheduled daily import names its
statement as `gs://bucket/object` (the run's `source`, `path` empty), which
the worker reads through the same storage API with the service account's
credentials. A run's `path` that is absolute is a file on the worker's own
disk: one named on the command line, or in SETTLEMENT_LOCAL_DIR by the job API.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.core.files.uploadedfile import UploadedFile

from revassure import files

PREFIX = files.PREFIX
FOLDER = "settlement"  # in the shared storage
_PIECE = 1 << 20

BadSource = files.BadLocation


def is_cloud_storage(source: str) -> bool:
    return files.is_uri(source)


def split_uri(uri: str) -> tuple[str, str]:
    """(bucket, object name) of gs://bucket/object; BadSource when it is not one."""
    return files.split_uri(uri)


def digest(path: Path | str) -> tuple[str, int, int]:
    """(SHA-256 hex, size in bytes, newline count) of the file, read in pieces:
    the identity of the file, and about how many rows it holds (progress)."""
    sha, size, lines = hashlib.sha256(), 0, 0
    with open(path, "rb") as source:
        while piece := source.read(_PIECE):
            sha.update(piece)
            size += len(piece)
            lines += piece.count(b"\n")
    return sha.hexdigest(), size, lines


def keep(upload: UploadedFile, name: str) -> str:
    """Keep an uploaded statement where every worker reads it; its stored name."""
    return files.keep(upload, f"{FOLDER}/{name}")


def forget(name: str) -> None:
    files.forget(name)


@contextmanager
def statement_file(source: str, path: str) -> Iterator[Path]:
    """A local file holding a run's statement (its `source` and `path`): the
    gs:// object or the kept upload copied to this machine for the run's
    length, or the local file itself. FileNotFoundError, naming it, when it is
    not there."""
    if is_cloud_storage(source) and not path:
        storage, name = files.storage_of_uri(source)
        where = f"{source}: no such object in Cloud Storage"
    elif Path(path).is_absolute():
        storage, name, where = None, path, f"{path}: no such file on this machine"
    else:
        storage, name, where = files.shared(), path, f"the uploaded statement ({path}) is no longer kept"
    if storage is None:
        if not Path(name).is_file():
            raise FileNotFoundError(where)
        yield Path(name)
        return
    there = files.bounded(source if is_cloud_storage(source) else name, lambda: storage.exists(name))
    if not there:
        raise FileNotFoundError(where)
    with files.local_copy(storage, name) as local:
        yield local
