"""Firestore's Eventarc events (`google.cloud.firestore.document.v1.*`, CloudEvents
binary mode) read into the writes the watcher checks.

The body is `DocumentEventData` (google.events.cloud.firestore.v1, PyPI
`google-events`, not installed here): `value` (1) and `old_value` (2) are
Documents and `update_mask` (3) a DocumentMask, with the field numbers of
google.firestore.v1's own Document (name 1, fields 2, create_time 3,
update_time 4, Values alike) and DocumentMask. So the message is declared here
with google-cloud-firestore's public types, and reads the same bytes.
"""

from __future__ import annotations

from datetime import datetime

import proto
from google.cloud.firestore_v1.types import common, document

from revassure.firestore.listen import Write
from revassure.firestore.model import LEDGER, WALLETS

__protobuf__ = proto.module(package="google.events.cloud.firestore.v1", manifest={"DocumentEventData"})

EVENT_TYPES = frozenset(
    f"google.cloud.firestore.document.v1.{kind}" for kind in ("written", "created", "updated", "deleted")
)


class DocumentEventData(proto.Message):
    value = proto.Field(proto.MESSAGE, number=1, message=document.Document)
    old_value = proto.Field(proto.MESSAGE, number=2, message=document.Document)
    update_mask = proto.Field(proto.MESSAGE, number=3, message=common.DocumentMask)


class BadEvent(ValueError):
    pass


def event_body(
    value_name: str | None, *, old_name: str | None = None, update_time: datetime | None = None
) -> bytes:
    """The protobuf body of an event (tests, and whoever replays events)."""
    data = DocumentEventData()
    if value_name:
        data.value = document.Document(name=value_name, update_time=update_time)
    if old_name:
        data.old_value = document.Document(name=old_name)
    return DocumentEventData.serialize(data)


def written_of(body: bytes, *, event_time: datetime) -> Write | None:
    """The wallet write an event reports, or None for a document that is neither
    a wallet nor a ledger entry. A deletion's time is the event's."""
    try:
        data = DocumentEventData.deserialize(body)
    except Exception as exc:  # protobuf's DecodeError, and whatever a truncated body raises
        raise BadEvent(f"the body is not a DocumentEventData message: {exc}") from exc
    deleted = not data.value.name
    name = data.old_value.name if deleted else data.value.name
    if "/documents/" not in name:
        raise BadEvent("the event names no document")
    path = name.split("/documents/", 1)[1]
    parts = path.split("/")
    wallet = len(parts) == 2 and parts[0] == WALLETS
    entry = len(parts) == 4 and parts[0] == WALLETS and parts[2] == LEDGER
    if not (wallet or entry):
        return None
    update_time = None if deleted else data.value.update_time
    write_time = update_time if update_time and update_time.timestamp() > 0 else event_time
    return Write(parts[1], path, write_time, deleted=deleted)
