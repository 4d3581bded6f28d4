"""Files a worker on any machine must read, through Django's storage API.

Two kinds:

- Files the product keeps for its workers (the admin's uploads: backfill
  exports, finance's reversal CSVs, settlement statements) go to the shared
  storage, `storages["default"]` (settings.STORAGES): Cloud Storage in
  production (REVASSURE_STORAGE=gcs: django-storages' GoogleCloudStorage on
  GS_BUCKET_NAME), the local disk under MEDIA_ROOT otherwise (one machine,
  `make demo`, or a volume every machine mounts). `keep` saves one and returns
  its stored name; the task carries the name, and whichever worker takes it
  reads the file from there (`local_copy`).
- Files people name by URI, `gs://bucket/object` (the job API's statement, a
  snapshot's directory `gs://bucket/prefix`), are read and written through the
  same API, on a GoogleCloudStorage of that bucket (`bucket_storage`).

Copying a stored file to this machine (`local_copy`, `download`) ends within
settings.STORAGE_DEADLINE_SECONDS (`bounded`), or fails with a StorageError
naming the deadline.

google-cloud-storage, under django-storages, honours STORAGE_EMULATOR_HOST:
the tests run all of it against a Cloud Storage emulator.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import google.auth.exceptions
import google.cloud.exceptions
from django.conf import settings
from django.core.files import File
from django.core.files.storage import Storage, storages

from revassure import outbound

PREFIX = "gs://"
PIECE = 1 << 20
T = TypeVar("T")


class BadLocation(ValueError):
    """Not a gs://bucket/object (or gs://bucket/prefix) URI."""


class StorageError(OSError):
    """Cloud Storage refused, or no credentials could be found for it."""


@contextmanager
def cloud_errors(where: str) -> Iterator[None]:
    """Cloud Storage's refusals as StorageError, in its own words, naming `where`
    (an unreachable endpoint is an OSError already)."""
    try:
        yield
    except google.cloud.exceptions.GoogleCloudError as exc:  # Cloud Storage's (google-cloud-core's) errors
        raise StorageError(f"{where}: Cloud Storage answered {exc.code} {exc.message}") from exc
    except google.auth.exceptions.DefaultCredentialsError as exc:
        raise StorageError(f"{where}: no credentials for Cloud Storage ({exc})") from exc


def bounded(where: str, call: Callable[[], T]) -> T:
    """call() (a read through a storage) within settings.STORAGE_DEADLINE_SECONDS,
    Cloud Storage's refusals and the deadline as StorageError naming `where`.
    google-cloud-storage's timeout is per read, so a trickling answer would hold
    the worker for good; at the deadline the worker moves on, and the abandoned
    read ends when that per-read timeout fires or the stream does (outbound.within)."""
    seconds = settings.STORAGE_DEADLINE_SECONDS
    with cloud_errors(where):
        try:
            return outbound.within(seconds, call)
        except outbound.DeadlineExceeded as exc:
            raise StorageError(f"{where}: not read in full within the deadline of {seconds:g} s") from exc


def shared() -> Storage:
    """Where files the workers read are kept (settings.STORAGES["default"])."""
    return storages["default"]


def keep(upload: File, name: str) -> str:
    """Save an uploaded file in the shared storage under `name` (or a free name
    beside it, which the storage picks); the name it is kept under."""
    upload.seek(0)
    given = upload.name
    try:
        return shared().save(name, upload)
    finally:
        upload.name = given  # GoogleCloudStorage renames the file object it saves


def forget(name: str) -> None:
    """Remove a kept file (one that was refused after it was kept); no error when it is gone."""
    shared().delete(name)


def is_uri(text: str) -> bool:
    return text.startswith(PREFIX)


def split_uri(uri: str, *, object_required: bool = True) -> tuple[str, str]:
    """(bucket, object name or prefix) of gs://bucket/name. BadLocation when it is
    not one (or names no object, when one is required)."""
    bucket, _, name = uri.removeprefix(PREFIX).partition("/")
    name = name if object_required else name.strip("/")
    if not is_uri(uri) or not bucket or (object_required and not name) or "\0" in uri:
        form = "gs://bucket/object" if object_required else "gs://bucket or gs://bucket/prefix"
        raise BadLocation(f"{uri!r} is not a Cloud Storage path ({form})")
    return bucket, name


def bucket_storage(bucket: str, prefix: str = "") -> Storage:
    """A Django storage over a Cloud Storage bucket, names relative to `prefix`."""
    # why: django-storages imports google-cloud-storage at import time; a machine
    # that never names a gs:// path (the local demo) loads neither.
    from storages.backends.gcloud import GoogleCloudStorage

    return GoogleCloudStorage(
        bucket_name=bucket,
        location=prefix.strip("/"),
        project_id=settings.GS_PROJECT_ID,
        max_memory_size=settings.GS_MAX_MEMORY_SIZE,
    )


def storage_of_uri(uri: str) -> tuple[Storage, str]:
    """The storage of gs://bucket/object, and the object's name in it."""
    bucket, name = split_uri(uri)
    return bucket_storage(bucket), name


@contextmanager
def local_copy(storage: Storage, name: str) -> Iterator[Path]:
    """A local file holding the stored file's bytes, for code that reads a path:
    the file itself where the storage is this machine's disk, otherwise a
    download to a temporary file, removed afterwards. FileNotFoundError when
    there is no such file, StorageError when Cloud Storage refuses."""
    try:
        path = Path(storage.path(name))
    except NotImplementedError:  # not on a local disk
        path = None
    if path is not None:
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {name}")
        yield path
        return
    handle, temporary = tempfile.mkstemp(prefix="revassure-", suffix=Path(name).suffix)
    os.close(handle)
    try:
        download(storage, name, Path(temporary))
        yield Path(temporary)
    finally:
        os.unlink(temporary)


def download(storage: Storage, name: str, target: Path) -> None:
    """Copy a stored file to `target` on this machine, within the storage deadline."""

    def copy() -> None:
        with storage.open(name, "rb") as source, target.open("wb") as out:
            shutil.copyfileobj(source, out, PIECE)

    bounded(name, copy)


def upload(storage: Storage, source: Path, name: str) -> None:
    """Copy a local file into a bucket's storage under exactly `name` (replacing
    it: bucket_storage overwrites, GS_FILE_OVERWRITE's default)."""
    with source.open("rb") as handle:
        stored = storage.save(name, File(handle, name=name))
    if stored != name:  # the storage chose another name: never leave a stray copy
        storage.delete(stored)
        raise OSError(f"{name}: the storage kept it as {stored}")
