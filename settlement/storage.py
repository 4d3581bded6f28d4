"""Statement files: digests, uploads kept for the workers, and Cloud Storage.

The scheduled daily import names its statement as `gs://bucket/object`; the
worker fetches it with the service account's default credentials through
Cloud Storage's JSON API (streamed to disk, the token's refresh and the
download each within a total deadline: revassure.outbound), so no client
library beyond google-auth is needed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import quote

import google.auth
from django.conf import settings

from revassure import outbound

PREFIX = "gs://"
_API = "https://storage.googleapis.com/storage/v1/b/{bucket}/o/{name}?alt=media"
_PIECE = 1 << 20


class BadSource(ValueError):
    pass


def is_cloud_storage(source: str) -> bool:
    return source.startswith(PREFIX)


def split_uri(uri: str) -> tuple[str, str]:
    """(bucket, object name) of gs://bucket/object; BadSource when it is not one."""
    bucket, _, name = uri.removeprefix(PREFIX).partition("/")
    if not is_cloud_storage(uri) or not bucket or not name:
        raise BadSource(f"{uri!r} is not a Cloud Storage path (gs://bucket/object)")
    return bucket, name


def fetch(uri: str, target: Path) -> Path:
    """Download gs://bucket/object to `target` (streamed) within
    SETTLEMENT_FETCH_DEADLINE_SECONDS; its path. OSError when it cannot."""
    bucket, name = split_uri(uri)
    credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/devstorage.read_only"])
    url = _API.format(bucket=quote(bucket, safe=""), name=quote(name, safe=""))
    headers: dict[str, str] = {}
    credentials.before_request(
        outbound.GoogleAuthRequest(settings.OUTBOUND_DEADLINE_SECONDS), "GET", url, headers
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as out:
        answer = outbound.request(
            "GET", url, seconds=settings.SETTLEMENT_FETCH_DEADLINE_SECONDS, headers=headers, sink=out
        )
    if answer.status != 200:
        target.unlink(missing_ok=True)
        raise OSError(f"Cloud Storage answered HTTP {answer.status} for {uri}")
    return target


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


def keep(upload, folder: Path, name: str) -> Path:
    """Write an uploaded file where the workers read it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    upload.seek(0)
    with path.open("wb") as target:
        for piece in upload.chunks():
            target.write(piece)
    return path
