"""A document as a snapshot line holds it, and back, exactly.

A document travels as a plain dict, `{"path": "wallets/u1/ledger/e1",
"fields": {name: tagged value}}`, where each value carries its Firestore type
as a one-key dict: {"int": "120"} (digits in a string, so no JSON reader
rounds it past 2**53), {"float": "12.5"} (Python's repr, so NaN, infinities
and -0.0 survive), {"str": ...}, {"bool": ...}, {"null": None},
{"time": "2026-11-20T10:00:00.123456Z"} (RFC 3339 as stored: Firestore keeps
microseconds; the format would carry nanoseconds unchanged),
{"bytes": base64}, {"ref": "wallets/u1"} (relative to the database, so a
restore into another project points into that project), {"geo": [lat, lng]},
{"array": [...]}, {"map": {...}}. Values are read from the raw protobuf
responses and written back as raw protobufs, so nothing passes through a
Python type that could change it.

`documents` is the database's documents path (`projects/p/databases/(default)/documents`):
paths and references are kept relative to it.
"""

from __future__ import annotations

import base64
from typing import Any

from google.protobuf.struct_pb2 import NULL_VALUE
from google.protobuf.timestamp_pb2 import Timestamp
from google.type.latlng_pb2 import LatLng

from revassure.firestore import encoding
from revassure.firestore.encoding import Document

Tagged = dict[str, Any]
SnapshotDocument = dict[str, Any]  # {"path": relative path, "fields": {name: Tagged}}


def snapshot_document(document: Document, documents: str) -> SnapshotDocument:
    """A raw Document as a snapshot line's content."""
    return {
        "path": document.name[len(documents) + 1 :],
        "fields": {name: tagged(value, documents) for name, value in document.fields.items()},
    }


def raw_document(document: SnapshotDocument, documents: str) -> Document:
    """A snapshot line's content as the raw Document it was read from
    (ValueError when a value is not one the format writes)."""
    return encoding.Document(
        name=f"{documents}/{document['path']}", fields=raw_fields(document["fields"], documents)
    )


def tagged(value: Any, documents: str) -> Tagged:
    """A raw Firestore Value as a tagged value."""
    kind = value.WhichOneof("value_type")
    if kind == "integer_value":
        return {"int": str(value.integer_value)}
    if kind == "string_value":
        return {"str": value.string_value}
    if kind == "timestamp_value":
        return {"time": value.timestamp_value.ToJsonString()}
    if kind == "double_value":
        return {"float": repr(value.double_value)}
    if kind == "boolean_value":
        return {"bool": value.boolean_value}
    if kind == "null_value":
        return {"null": None}
    if kind == "map_value":
        return {"map": {name: tagged(item, documents) for name, item in value.map_value.fields.items()}}
    if kind == "array_value":
        return {"array": [tagged(item, documents) for item in value.array_value.values]}
    if kind == "bytes_value":
        return {"bytes": base64.b64encode(value.bytes_value).decode("ascii")}
    if kind == "reference_value":
        ours = documents + "/"
        ref = value.reference_value
        return {"ref": ref[len(ours) :] if ref.startswith(ours) else ref}
    if kind == "geo_point_value":
        return {"geo": [value.geo_point_value.latitude, value.geo_point_value.longitude]}
    raise ValueError(f"unknown Firestore value type {kind!r}")


def raw_value(one: Tagged, documents: str) -> Any:
    """A tagged value as a raw Firestore Value (ValueError when it is not one)."""
    if not isinstance(one, dict) or len(one) != 1:
        raise ValueError(f"not a tagged value: {one!r}")
    ((kind, item),) = one.items()
    Value = encoding.Value
    if kind == "int":
        return Value(integer_value=int(item))
    if kind == "str":
        return Value(string_value=item)
    if kind == "time":
        stamp = Timestamp()
        stamp.FromJsonString(item)
        return Value(timestamp_value=stamp)
    if kind == "float":
        return Value(double_value=float(item))
    if kind == "bool":
        return Value(boolean_value=bool(item))
    if kind == "null":
        return Value(null_value=NULL_VALUE)
    if kind == "map":
        return Value(map_value=encoding.MapValue(fields=raw_fields(item, documents)))
    if kind == "array":
        return Value(array_value=encoding.ArrayValue(values=[raw_value(each, documents) for each in item]))
    if kind == "bytes":
        return Value(bytes_value=base64.b64decode(item, validate=True))
    if kind == "ref":
        return Value(reference_value=item if item.startswith("projects/") else f"{documents}/{item}")
    if kind == "geo":
        lat, lng = item
        return Value(geo_point_value=LatLng(latitude=lat, longitude=lng))
    raise ValueError(f"unknown value type {kind!r}")


def raw_fields(fields: dict[str, Tagged], documents: str) -> dict[str, Any]:
    return {name: raw_value(one, documents) for name, one in fields.items()}
