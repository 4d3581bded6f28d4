"""Raw Firestore protobufs: values, writes, and the requests the gateway sends.

The gateway's hot paths (streaming wallets, one aggregation per wallet,
batched reads, commits of payments and transactions) send requests built here
as raw protobuf messages (`Message.pb()`, the classes behind the public
proto-plus types) and read raw responses: a fraction of proto-plus's per-field
cost. tests/revassure/test_gateway_contract.py checks that what is built here
is what the public API builds for the same change, and that answers decode to
what it returns.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

from google.api_core.datetime_helpers import DatetimeWithNanoseconds
from google.cloud.firestore import GeoPoint
from google.cloud.firestore_v1.types import aggregation_result as aggregation_result_pb
from google.cloud.firestore_v1.types import common as common_pb
from google.cloud.firestore_v1.types import document as document_pb
from google.cloud.firestore_v1.types import firestore as firestore_pb
from google.cloud.firestore_v1.types import query as query_pb
from google.cloud.firestore_v1.types import write as write_pb
from google.protobuf.struct_pb2 import NULL_VALUE
from google.protobuf.timestamp_pb2 import Timestamp

from revassure.firestore.model import LEDGER, WALLETS, LedgerTotals, ledger_totals

if TYPE_CHECKING:
    # proto-plus builds these raw protobuf classes at run time: no static types exist for them.
    Value: TypeAlias = Any
    Write: TypeAlias = Any
    RunQueryRequest: TypeAlias = Any
    ListDocumentsRequest: TypeAlias = Any
    RunAggregationQueryRequest: TypeAlias = Any
    ListenRequest: TypeAlias = Any
    Document: TypeAlias = Any
    AggregationResult: TypeAlias = Any
else:
    Value = document_pb.Value.pb()
    Write = write_pb.Write.pb()
    RunQueryRequest = firestore_pb.RunQueryRequest.pb()
    ListDocumentsRequest = firestore_pb.ListDocumentsRequest.pb()
    RunAggregationQueryRequest = firestore_pb.RunAggregationQueryRequest.pb()
    ListenRequest = firestore_pb.ListenRequest.pb()
    Document = document_pb.Document.pb()
    AggregationResult = aggregation_result_pb.AggregationResult.pb()
ArrayValue = document_pb.ArrayValue.pb()
MapValue = document_pb.MapValue.pb()
FieldTransform = write_pb.DocumentTransform.FieldTransform.pb()
Precondition = common_pb.Precondition.pb()
DocumentMask = common_pb.DocumentMask.pb()
TransactionOptions = common_pb.TransactionOptions.pb()
Query = query_pb.StructuredQuery.pb()
Aggregation = query_pb.StructuredAggregationQuery.Aggregation.pb()
AggregationQuery = query_pb.StructuredAggregationQuery.pb()
BatchGetDocumentsRequest = firestore_pb.BatchGetDocumentsRequest.pb()
CommitRequest = firestore_pb.CommitRequest.pb()
BeginTransactionRequest = firestore_pb.BeginTransactionRequest.pb()
RollbackRequest = firestore_pb.RollbackRequest.pb()
Target = firestore_pb.Target.pb()
WALLETS_PAGE = 1000  # wallets in one page of a listing

# -- values -------------------------------------------------------------------


def encode(value: Any) -> Value:
    """A Python value as a Firestore Value (the types the gateway writes and reads)."""
    if value is None:
        return Value(null_value=NULL_VALUE)
    if isinstance(value, bool):  # before int: a bool is an int
        return Value(boolean_value=value)
    if isinstance(value, int):
        return Value(integer_value=value)  # ValueError past 64 bits, as the public API
    if isinstance(value, float):
        return Value(double_value=value)
    if isinstance(value, str):
        return Value(string_value=value)
    if isinstance(value, dt.datetime):
        return Value(timestamp_value=timestamp(value))
    if isinstance(value, bytes):
        return Value(bytes_value=value)
    if isinstance(value, GeoPoint):
        return Value(geo_point_value=value.to_protobuf())
    if isinstance(value, list | tuple):
        return Value(array_value=ArrayValue(values=[encode(item) for item in value]))
    if isinstance(value, dict):
        return Value(map_value=MapValue(fields=encode_fields(value)))
    raise TypeError(f"cannot store {type(value).__name__} in Firestore: {value!r}")


def encode_fields(fields: dict[str, Any]) -> dict[str, Value]:
    return {key: encode(value) for key, value in fields.items()}


def read_timestamp(value: dt.datetime | None) -> Timestamp | None:
    """A read time for a request (None: read the present)."""
    return None if value is None else timestamp(value)


def timestamp(value: dt.datetime) -> Timestamp:
    """A datetime as a protobuf Timestamp; a naive datetime is taken as UTC."""
    if isinstance(value, DatetimeWithNanoseconds):
        return value.timestamp_pb()
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    delta = value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    micros = (delta.days * 86400 + delta.seconds) * 10**6 + delta.microseconds
    seconds, micros = divmod(micros, 10**6)
    return Timestamp(seconds=seconds, nanos=micros * 1000)


def decode(value: Value) -> Any:
    """A Firestore Value as a Python value; a reference becomes its document path."""
    kind = value.WhichOneof("value_type")
    if kind == "integer_value":
        return value.integer_value
    if kind == "string_value":
        return value.string_value
    if kind == "null_value":
        return None
    if kind == "boolean_value":
        return value.boolean_value
    if kind == "double_value":
        return value.double_value
    if kind == "timestamp_value":
        return DatetimeWithNanoseconds.from_timestamp_pb(value.timestamp_value)
    if kind == "bytes_value":
        return value.bytes_value
    if kind == "reference_value":
        return value.reference_value.split("/documents/", 1)[-1]
    if kind == "geo_point_value":
        return GeoPoint(value.geo_point_value.latitude, value.geo_point_value.longitude)
    if kind == "array_value":
        return [decode(item) for item in value.array_value.values]
    if kind == "map_value":
        return decode_fields(value.map_value.fields)
    raise ValueError(f"unknown Firestore value type {kind!r}")


def decode_fields(fields: Mapping[str, Value]) -> dict[str, Any]:
    return {key: decode(value) for key, value in fields.items()}


# -- writes (each as the public WriteBatch builds it) -------------------------


def create_write(name: str, fields: dict[str, Any]) -> Write:
    """Create the document; fails (ALREADY_EXISTS) if it exists: `batch.create`."""
    return Write(
        update=Document(name=name, fields=encode_fields(fields)),
        current_document=Precondition(exists=False),
    )


def increment_write(name: str, amount: int, *, update_time: Timestamp | None = None) -> Write:
    """points += amount, updatedAt := server time, on an existing document
    (or, with `update_time`, only if it is unchanged since then): `batch.update`
    with Increment and SERVER_TIMESTAMP (and `write_option(last_update_time=)`)."""
    condition = Precondition(exists=True) if update_time is None else Precondition(update_time=update_time)
    return Write(
        update=Document(name=name),
        update_mask=DocumentMask(),
        update_transforms=[
            FieldTransform(field_path="points", increment=Value(integer_value=amount)),
            FieldTransform(field_path="updatedAt", set_to_server_value=FieldTransform.REQUEST_TIME),
        ],
        current_document=condition,
    )


def set_points_write(name: str, points: int | float, *, update_time: Timestamp | None = None) -> Write:
    """points := points, updatedAt := server time, other fields kept:
    `batch.set(..., merge=True)` with SERVER_TIMESTAMP (with `update_time`, only
    if the document is unchanged since then: `write_option(last_update_time=)`)."""
    return Write(
        update=Document(name=name, fields={"points": Value(integer_value=points)}),
        update_mask=DocumentMask(field_paths=["points"]),
        update_transforms=[
            FieldTransform(field_path="updatedAt", set_to_server_value=FieldTransform.REQUEST_TIME),
        ],
        current_document=None if update_time is None else Precondition(update_time=update_time),
    )


def touch_write(name: str, *, update_time: Timestamp) -> Write:
    """updatedAt := server time, nothing else, only if the document is unchanged
    since `update_time`: a version mark for a write that moves the document's
    subcollection (its ledger) but not the document."""
    return Write(
        update=Document(name=name),
        update_mask=DocumentMask(),
        update_transforms=[
            FieldTransform(field_path="updatedAt", set_to_server_value=FieldTransform.REQUEST_TIME),
        ],
        current_document=Precondition(update_time=update_time),
    )


# -- queries --------------------------------------------------------------------

# sum(amount) as total, count() as count, over a `ledger` collection: the query
# `collection.sum("amount", alias="total").count(alias="count")` sends.
LEDGER_TOTALS = AggregationQuery(
    structured_query=Query(from_=[Query.CollectionSelector(collection_id=LEDGER)]),
    aggregations=[
        Aggregation(alias="total", sum=Aggregation.Sum(field=Query.FieldReference(field_path="amount"))),
        Aggregation(alias="count", count=Aggregation.Count()),
    ],
)


def ledger_totals_request(
    wallet: str, transaction: bytes | None = None, read_time: Timestamp | None = None
) -> RunAggregationQueryRequest:
    """The LEDGER_TOTALS of `wallet`, in a transaction or as of `read_time` when given."""
    request = RunAggregationQueryRequest(parent=wallet, structured_aggregation_query=LEDGER_TOTALS)
    if transaction is not None:
        request.transaction = transaction
    if read_time is not None:
        request.read_time.CopyFrom(read_time)
    return request


def decode_totals(result: AggregationResult | None) -> LedgerTotals:
    """The LedgerTotals of an aggregation result (None when the server sent none)."""
    fields = result.aggregate_fields if result is not None else {}
    total, count = (decode(fields[name]) if name in fields else None for name in ("total", "count"))
    return ledger_totals(total, count)


def wallets_request(documents: str, token: str, read_time: Timestamp | None = None) -> ListDocumentsRequest:
    """A page of WALLETS_PAGE wallets' `points`, in document-name order: the
    first for an empty `token`, else the page the previous page's token names;
    as of `read_time` when given."""
    request = ListDocumentsRequest(
        parent=documents, collection_id=WALLETS, page_size=WALLETS_PAGE, page_token=token
    )
    request.mask.field_paths.append("points")
    if read_time is not None:
        request.read_time.CopyFrom(read_time)
    return request


def listing_request(
    parent: str, collection_id: str, token: str, *, show_missing: bool
) -> ListDocumentsRequest:
    """A page of WALLETS_PAGE document names of `parent`/`collection_id` (no fields),
    in name order; with `show_missing`, also the documents that do not exist
    but have subcollections (a wallet deleted with its ledger left behind)."""
    request = ListDocumentsRequest(
        parent=parent,
        collection_id=collection_id,
        page_size=WALLETS_PAGE,
        page_token=token,
        show_missing=show_missing,
    )
    request.mask.SetInParent()  # names only
    return request


def collection_request(parent: str, collection: str, read_time: dt.datetime | None = None) -> RunQueryRequest:
    """Every document of `parent`/`collection` (in name order on Firestore), as of
    `read_time` when given."""
    query = Query(from_=[Query.CollectionSelector(collection_id=collection)])
    request = RunQueryRequest(parent=parent, structured_query=query)
    if read_time is not None:
        request.read_time.CopyFrom(timestamp(read_time))
    return request


def listen_request(
    database: str, parent: str, collection: str, *, all_descendants: bool, target_id: int
) -> ListenRequest:
    """Listen to every document of `parent`/`collection` (with `all_descendants`, of
    every collection of that name below it: a collection group), as one target."""
    query = Query(from_=[Query.CollectionSelector(collection_id=collection, all_descendants=all_descendants)])
    target = Target(query=Target.QueryTarget(parent=parent, structured_query=query), target_id=target_id)
    return ListenRequest(database=database, add_target=target)


def where_equal_request(
    parent: str, collection: str, field: str, value: Any, transaction: bytes | None
) -> RunQueryRequest:
    """The documents of `parent`/`collection` whose `field` equals `value`."""
    condition = Query.Filter(
        field_filter=Query.FieldFilter(
            field=Query.FieldReference(field_path=field),
            op=Query.FieldFilter.Operator.EQUAL,
            value=encode(value),
        )
    )
    request = RunQueryRequest(
        parent=parent,
        structured_query=Query(from_=[Query.CollectionSelector(collection_id=collection)], where=condition),
    )
    if transaction is not None:
        request.transaction = transaction
    return request


# How the public Transaction begins a read-only one.
READ_ONLY = TransactionOptions(read_only=TransactionOptions.ReadOnly())
