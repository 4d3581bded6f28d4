"""One snapshot file: gzip-compressed JSON Lines, and beside it its line index.

`NAME.jsonl.gz` holds one document a line, `{"fields": {...}, "path": "..."}`
(keys sorted, no spaces: the same document always makes the same line), in
one gzip member written with no name and no time, so the same lines always
make the same bytes.

`NAME.lines` holds one line per line of the data file: the first 16 hex
digits of the SHA-256 of that line (without its newline). The manifest's
SHA-256 of each file is what says a snapshot is intact; the index is what lets
a verification name the line that changed, went missing or was added, even
inside compressed data.

Both are written under `.partial` names and renamed when complete (the index
first), so a data file under its final name is always whole.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

DATA = ".jsonl.gz"
INDEX = ".lines"
PARTIAL = ".partial"
DIGEST_CHARS = 16
COMPRESSLEVEL = 6
FLUSH_BYTES = 1 << 16  # lines are handed to gzip in pieces of about this size
READ_BYTES = 1 << 14  # compressed bytes fed to the decompressor at a time


def line_of(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def digest(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()[:DIGEST_CHARS]


@dataclass
class FileRecord:
    """What the manifest says of one data file and its index."""

    name: str
    sha256: str
    lines: int
    bytes: int
    index_sha256: str
    index_bytes: int

    def as_manifest(self) -> dict[str, Any]:
        return asdict(self)


class _Counted:
    """A file that hashes and counts what is written to it (gzip's output)."""

    def __init__(self, path: Path):
        self.file = path.open("wb")
        self.sha256 = hashlib.sha256()
        self.bytes = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.bytes += len(data)
        return self.file.write(data)

    def flush(self) -> None:
        self.file.flush()

    def finish(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()


class FileWriter:
    """Writes one data file and its index under `.partial` names; `close` makes them final."""

    def __init__(self, directory: Path, stem: str):
        self.directory = directory
        self.name = stem + DATA
        self.index_name = stem + INDEX
        self.lines = 0
        self._data = _Counted(directory / (self.name + PARTIAL))
        self._gzip = gzip.GzipFile(
            filename="", mode="wb", fileobj=self._data, compresslevel=COMPRESSLEVEL, mtime=0
        )
        self._index = _Counted(directory / (self.index_name + PARTIAL))
        self._pending: list[bytes] = []
        self._digests: list[str] = []
        self._pending_bytes = 0

    def write(self, document: dict[str, Any]) -> None:
        line = line_of(document)
        self._pending.append(line)
        self._digests.append(hashlib.sha256(line).hexdigest()[:DIGEST_CHARS])
        self._pending_bytes += len(line) + 1
        self.lines += 1
        if self._pending_bytes >= FLUSH_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._pending.append(b"")
            self._gzip.write(b"\n".join(self._pending))
            self._digests.append("")
            self._index.write("\n".join(self._digests).encode())
        self._pending, self._digests, self._pending_bytes = [], [], 0

    def close(self) -> FileRecord:
        self._flush()
        self._gzip.close()
        self._data.finish()
        self._index.finish()
        os.replace(self.directory / (self.index_name + PARTIAL), self.directory / self.index_name)
        os.replace(self.directory / (self.name + PARTIAL), self.directory / self.name)
        return FileRecord(
            name=self.name,
            sha256=self._data.sha256.hexdigest(),
            lines=self.lines,
            bytes=self._data.bytes,
            index_sha256=self._index.sha256.hexdigest(),
            index_bytes=self._index.bytes,
        )

    def abandon(self) -> None:
        """Close and remove the partial files (the snapshot stopped half-way)."""
        for handle in (self._data.file, self._index.file):
            handle.close()
        for name in (self.name, self.index_name):
            (self.directory / (name + PARTIAL)).unlink(missing_ok=True)


# -- reading ---------------------------------------------------------------------


class Damaged(Exception):
    """The compressed data cannot be read from line `line` on."""

    def __init__(self, line: int, reason: str):
        super().__init__(reason)
        self.line = line
        self.reason = reason


@dataclass
class Reading:
    """What reading a data file found besides its lines: its SHA-256 and size (once read to the end)."""

    sha256: str = ""
    bytes: int = 0
    trailing: str = ""  # a problem after the last line (a damaged gzip trailer, data after the end)


def read_lines(path: Path, reading: Reading) -> Iterator[bytes]:
    """Each line of a data file (without its newline), decompressed as it is read.

    Raises Damaged, naming the first line that cannot be read, when the
    compressed data is broken; fills `reading` as it goes.
    """
    sha = hashlib.sha256()
    inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    rest = b""
    lines = 0
    with path.open("rb") as file:
        while piece := file.read(READ_BYTES):
            sha.update(piece)
            reading.bytes += len(piece)
            if inflate.eof:
                reading.trailing = reading.trailing or "data after the end of the compressed stream"
                continue
            before = inflate.copy()
            try:
                out = inflate.decompress(piece)
            except zlib.error as exc:
                # Read the piece again in small steps, to name the first line
                # that really cannot be read rather than the piece's first.
                salvaged = _salvage(before, piece)
                *complete, _ = (rest + salvaged).split(b"\n")
                for line in complete:
                    lines += 1
                    yield line
                raise Damaged(lines + 1, f"the compressed data is damaged from here ({exc})") from exc
            if inflate.unused_data:
                reading.trailing = "data after the end of the compressed stream"
            if not out:
                continue
            chunk = rest + out
            *complete, rest = chunk.split(b"\n")
            for line in complete:
                lines += 1
                yield line
    reading.sha256 = sha.hexdigest()
    if not inflate.eof:
        raise Damaged(lines + 1, "the compressed data ends early (the file was cut short)")
    if rest:
        # The last line always ends with a newline when written.
        lines += 1
        yield rest
        reading.trailing = reading.trailing or f"line {lines} has no newline at its end"


def _salvage(inflate, piece: bytes, step: int = 64) -> bytes:
    """What `inflate` gives for `piece`, read `step` bytes at a time, up to the first error."""
    out = []
    for start in range(0, len(piece), step):
        try:
            out.append(inflate.decompress(piece[start : start + step]))
        except zlib.error:
            break
        if inflate.eof:
            break
    return b"".join(out)


def read_index(path: Path, reading: Reading) -> Iterator[str]:
    """The digests of an index file, one a line; fills `reading` with its SHA-256 and size."""
    sha = hashlib.sha256()
    with path.open("rb") as file:
        for raw in file:
            sha.update(raw)
            reading.bytes += len(raw)
            yield raw.rstrip(b"\n").decode("ascii", errors="replace")
    reading.sha256 = sha.hexdigest()
