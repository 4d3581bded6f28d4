"""Raw protobuf requests and writes, built from templates for speed."""

from __future__ import annotations

from typing import Any

from google.cloud.firestore_v1 import _helpers
from google.cloud.firestore_v1.types import common as common_pb
from google.cloud.firestore_v1.types import document as document_pb
from google.cloud.firestore_v1.types import firestore as firestore_pb
from google.cloud.firestore_v1.types import query as query_pb
from google.cloud.firestore_v1.types import write as write_pb

from revassure.firestore.model import LEDGER

_Query = query_pb.StructuredQuery.pb()
_Aggregation = query_pb.StructuredAggregationQuery.Aggregation.pb()
AggregationRequest = firestore_pb.RunAggregationQueryRequest.pb()
# sum(amount) as total, count() as count, over a `ledger` collection.
LEDGER_TOTALS = query_pb.StructuredAggregationQuery.pb()(
    structured_query=_Query(from_=[_Query.CollectionSelector(collection_id=LEDGER)]),
    aggregations=[
        _Aggregation(alias="total", sum=_Aggregation.Sum(field=_Query.FieldReference(field_path="amount"))),
        _Aggregation(alias="count", count=_Aggregation.Count()),
    ],
)
_Write = write_pb.Write.pb()
_Document = document_pb.Document.pb()
_Value = document_pb.Value.pb()
_Precondition = common_pb.Precondition.pb()
_FieldTransform = write_pb.DocumentTransform.FieldTransform.pb()
_DocumentMask = common_pb.DocumentMask.pb()


def _raw_value(value: Any):
    """A Python value as a raw protobuf Value (the common types directly, the rest
    through the client's own encoder)."""
    if value is None:
        return _Value(null_value=0)
    if value is True or value is False:
        return _Value(boolean_value=value)
    if type(value) is int:
        return _Value(integer_value=value)
    if type(value) is str:
        return _Value(string_value=value)
    return _helpers.encode_value(value)._pb


def create_write(name: str, fields: dict[str, Any]):
    """A write that creates the document and fails if it exists (as batch.create)."""
    return _Write(
        update=_Document(name=name, fields={key: _raw_value(v) for key, v in fields.items()}),
        current_document=_Precondition(exists=False),
    )


def increment_write(name: str, amount: int, update_time):
    """points += amount and updatedAt := server time, only if the document's
    update time is still `update_time` (as batch.update with those transforms)."""
    return _Write(
        update=_Document(name=name),
        update_mask=_DocumentMask(),
        update_transforms=[
            _FieldTransform(field_path="points", increment=_Value(integer_value=amount)),
            _FieldTransform(field_path="updatedAt", set_to_server_value=_FieldTransform.REQUEST_TIME),
        ],
        current_document=_Precondition(update_time=update_time),
    )
