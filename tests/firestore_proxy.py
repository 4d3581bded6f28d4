"""A fault-injecting gRPC proxy between the gateway and the Firestore emulator,
shared by the gateway's contract tests and the lost-answer tests.

`FirestoreProxy` forwards each call as bytes, records the requests, and can:

- fail a call before it reaches Firestore (`fail`), with any status;
- break a streamed answer after some responses (`break_stream`);
- lose an answer (`lose_answer`): the call goes to Firestore, which applies
  it, and the client is told DEADLINE_EXCEEDED or UNAVAILABLE instead of the
  answer, as when a deadline passes or a connection drops after the commit.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc
from google.cloud.firestore_v1.types import firestore as firestore_pb

from revassure.firestore import FirestoreGateway

STREAMING = {"RunQuery", "RunAggregationQuery", "BatchGetDocuments"}
BIDI = {"Listen"}
# lose_answer(method, nth call of it, request bytes) -> a status to end the
# call with after Firestore answered it, or None to pass the answer on.
LoseAnswer = Callable[[str, int, bytes], grpc.StatusCode | None]


class FirestoreProxy(grpc.GenericRpcHandler):
    """A gRPC server that forwards every Firestore call to `upstream` as bytes."""

    def __init__(self, upstream: str):
        self.upstream = grpc.insecure_channel(upstream)
        self.requests: list[tuple[str, bytes]] = []
        self.calls: Counter = Counter()
        # fail(method, nth call of it) -> a status code to fail that call with, or None
        self.fail: Callable[[str, int], grpc.StatusCode | None] = lambda method, n: None
        self.break_stream: dict[str, int] = {}  # method -> responses sent before it breaks, once
        self.lose_answer: LoseAnswer = lambda method, n, request: None
        self.lost: list[tuple[str, bytes]] = []  # calls Firestore answered and the client never heard
        self._lock = threading.Lock()
        self.executor = ThreadPoolExecutor(max_workers=32)
        self.server = grpc.server(self.executor, handlers=[self])
        self.host = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"
        self.server.start()

    def stop(self) -> None:
        self.server.stop(grace=None)
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.upstream.close()

    def service(self, details):
        method = details.method
        if method.rsplit("/", 1)[1] in BIDI:
            return grpc.stream_stream_rpc_method_handler(
                lambda requests, context: self._bidi(method, requests, context)
            )
        if method.rsplit("/", 1)[1] in STREAMING:
            return grpc.unary_stream_rpc_method_handler(
                lambda request, context: self._stream(method, request, context)
            )
        return grpc.unary_unary_rpc_method_handler(
            lambda request, context: self._unary(method, request, context)
        )

    def sent(self, method: str) -> list[bytes]:
        return [request for name, request in self.requests if name == method]

    def _admit(self, method: str, request: bytes, context) -> tuple[str, int]:
        name = method.rsplit("/", 1)[1]
        with self._lock:
            self.calls[name] += 1
            nth = self.calls[name]
            self.requests.append((name, request))
            code = self.fail(name, nth)
        if code == grpc.StatusCode.ABORTED and name == "Commit":
            # Firestore ends a transaction it aborts: so does the emulator, told here.
            commit = firestore_pb.CommitRequest.pb().FromString(request)
            rollback = firestore_pb.RollbackRequest.pb()(
                database=commit.database, transaction=commit.transaction
            )
            self.upstream.unary_unary(method.replace("Commit", "Rollback"))(rollback.SerializeToString())
        if code is not None:
            context.abort(code, f"injected by the test proxy: {name} call {nth}")
        return name, nth

    def _unary(self, method, request, context):
        name, nth = self._admit(method, request, context)
        try:
            answer = self.upstream.unary_unary(method)(
                request, timeout=context.time_remaining(), metadata=_forwarded(context)
            )
        except grpc.RpcError as exc:
            context.abort(exc.code(), exc.details())
        with self._lock:
            lost = self.lose_answer(name, nth, request)
            if lost is not None:
                self.lost.append((name, request))
        if lost is not None:
            context.abort(lost, f"answer lost by the test proxy: {name} call {nth} was applied")
        return answer

    def _bidi(self, method, requests, context):
        self._admit(method, b"", context)
        try:
            yield from self.upstream.stream_stream(method)(requests, metadata=_forwarded(context))
        except grpc.RpcError as exc:
            context.abort(exc.code(), exc.details())

    def _stream(self, method, request, context):
        name, _ = self._admit(method, request, context)
        with self._lock:
            limit = self.break_stream.pop(name, None)
        try:
            for sent, response in enumerate(
                self.upstream.unary_stream(method)(
                    request, timeout=context.time_remaining(), metadata=_forwarded(context)
                )
            ):
                if sent == limit:
                    context.abort(grpc.StatusCode.UNAVAILABLE, "stream broken by the test proxy")
                yield response
        except grpc.RpcError as exc:
            context.abort(exc.code(), exc.details())


def written_paths(commit: bytes) -> list[str]:
    """The document paths (below `documents/`) a CommitRequest writes or deletes."""
    paths = []
    for write in firestore_pb.CommitRequest.pb().FromString(commit).writes:
        name = write.update.name if write.HasField("update") else write.delete
        paths.append(name.split("/documents/", 1)[1])
    return paths


def lose_once(code: grpc.StatusCode, writes: Callable[[list[str]], bool]) -> LoseAnswer:
    """Lose the answer of the first Commit whose written paths `writes` accepts;
    every other answer, and every later one, goes through."""
    done = []

    def lose(method: str, n: int, request: bytes) -> grpc.StatusCode | None:
        if done or method != "Commit" or not writes(written_paths(request)):
            return None
        done.append(n)
        return code

    return lose


# The gateways gateway_at made: tests/conftest.py closes them after each test.
MADE: list[FirestoreGateway] = []


def gateway_at(
    host: str, project: str, monkeypatch, *, retry_deadline: float = 30.0, call_timeout: float = 10.0
) -> FirestoreGateway:
    """A gateway whose clients are bound to `host` (they read it when first made);
    patient unless told otherwise, so that a busy machine fails no call."""
    with monkeypatch.context() as patch:
        patch.setenv("FIRESTORE_EMULATOR_HOST", host)
        gateway = FirestoreGateway(project, retry_deadline=retry_deadline, call_timeout=call_timeout)
        gateway.connect()  # binds every client to `host` now
    MADE.append(gateway)
    return gateway


def close_gateways_made() -> None:
    """Close every gateway gateway_at made: each holds a thread and channels."""
    while MADE:
        MADE.pop().close()


def _forwarded(context) -> list[tuple[str, str]]:
    """The caller's metadata, as Firestore would get it (the emulator's admin
    identity, `authorization: Bearer owner`, included), minus gRPC's own."""
    return [
        (key, value)
        for key, value in context.invocation_metadata()
        if not key.startswith(("grpc-", ":")) and key not in ("user-agent", "te", "content-type")
    ]
