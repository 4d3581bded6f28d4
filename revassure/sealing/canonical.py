"""The canonical JSON form a sealed report is hashed in: compact separators,
sorted keys, non-ASCII characters escaped (`ensure_ascii`), one line per record.

It is the form reconciliation and settlement reports have been sealed in from
the start, so their stored checksums verify unchanged. Cutover records were
hashed with `ensure_ascii=False` (UTF-8 bytes, no trailing newline): the same
bytes for ASCII text, different ones for, say, an "é" in a note. `legacy_utf8()`
is that form, kept only so records sealed before the kernel still verify.
"""

from __future__ import annotations

import json
from typing import Any

# One encoder for every record (json.dumps builds a new one per call with these options).
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)
# For comparing a value read back from a mirror: a type JSON lacks (a timestamp) as its repr.
_COMPARABLE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=repr)
_LEGACY_UTF8 = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical(data: Any) -> bytes:
    """`data` as canonical JSON bytes."""
    return _ENCODER.encode(data).encode()


def line(data: Any) -> bytes:
    """`data` as one canonical line: canonical JSON and a newline."""
    return canonical(data) + b"\n"


def comparable(value: Any) -> str:
    """A value as canonical JSON text for comparison: 2, 2.0, "2" and true all
    differ (Firestore keeps the type); a value of a type JSON lacks as its repr."""
    return _COMPARABLE.encode(value)


def legacy_utf8(data: Any) -> bytes:
    """The form cutover records sealed before the kernel were hashed in."""
    return _LEGACY_UTF8.encode(data).encode()
