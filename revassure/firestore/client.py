"""The gateway's clients, its event loop, and the retry policy every call follows.

Three clients share one address (the emulator's, from FIRESTORE_EMULATOR_HOST,
or Google's with default credentials), all made at once the first time a
process needs one:

- `client`: the public `google.cloud.firestore.Client`, for everything that is
  not a hot path;
- `api`: the public generated `FirestoreClient`, for the raw requests of the
  hot paths and for transactions (our own, so that BeginTransaction and Commit
  follow our retry policy: the public Transaction passes none);
- `async_api`: the generated `FirestoreAsyncClient` on a loop in a background
  thread, which multiplexes many aggregation queries over one channel at a
  fraction of the per-call CPU of threads.

They are made lazily, once per process: django-q2 forks its workers, and a gRPC
channel created before the fork hangs in the child. The `Connection` holding
them belongs to one gateway, which shares it with its parts and with no one else.

Every call gets an explicit retry (transient errors, exponential backoff with
full jitter, FIRESTORE_RETRY_DEADLINE in total) and timeout
(FIRESTORE_CALL_TIMEOUT per attempt): the generated clients' own defaults
(60 to 300 s of retries) never apply.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Coroutine
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TypedDict, cast

import grpc
from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.api_core import retry_async as gretry_async
from google.cloud import firestore
from google.cloud.firestore_v1.services.firestore import FirestoreAsyncClient, FirestoreClient
from google.cloud.firestore_v1.services.firestore.transports import (
    FirestoreGrpcAsyncIOTransport,
    FirestoreGrpcTransport,
)

from revassure import metrics
from revassure.firestore.model import TRANSIENT_ERRORS


class Backoff(TypedDict):
    """Exponential backoff, as google.api_core's Retry takes it (seconds)."""

    initial: float
    maximum: float
    multiplier: float


BACKOFF: Backoff = {"initial": 0.2, "maximum": 10.0, "multiplier": 2.0}  # seconds
# Inside a transaction an ABORTED read or commit is not retried on its own:
# the whole transaction starts again (see transactions.py).
TRANSIENT_IN_TRANSACTION = tuple(error for error in TRANSIENT_ERRORS if error is not gexc.Aborted)
CLOSE_TIMEOUT = 5.0  # seconds a closing channel may take to end its calls
_CHANNEL_OPTIONS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]


# The generated clients' server-streaming methods: a call lasts (and may fail)
# until its last response is read.
STREAMED = frozenset({"run_query", "run_aggregation_query", "batch_get_documents", "partition_query"})


class Measured:
    """A generated client whose every call is counted and timed
    (revassure_firestore_calls_total, revassure_firestore_call_duration_seconds):
    the one place the gateway's raw requests are measured."""

    def __init__(self, api):
        self._api = api

    def __getattr__(self, name: str):
        method = getattr(self._api, name)
        if name.startswith("_") or not callable(method):
            return method
        if name not in STREAMED:

            def call(*args, **kwargs):
                with metrics.firestore_call(name):
                    return method(*args, **kwargs)

            return call

        def stream(*args, **kwargs):
            with metrics.firestore_call(name):
                yield from method(*args, **kwargs)

        return stream


class MeasuredAsync(Measured):
    """The same for the asyncio client: a streamed call returns an async iterator."""

    def __getattr__(self, name: str):
        method = getattr(self._api, name)
        if name.startswith("_") or not callable(method):
            return method
        if name not in STREAMED:

            async def call(*args, **kwargs):
                with metrics.firestore_call(name):
                    return await method(*args, **kwargs)

            return call

        async def stream(*args, **kwargs):
            started = time.perf_counter()
            try:
                responses = await method(*args, **kwargs)
            except Exception as exc:
                metrics.firestore_call_ended(name, type(exc).__name__, time.perf_counter() - started)
                raise

            async def measured():
                outcome = "ok"
                try:
                    async for response in responses:
                        yield response
                except Exception as exc:
                    outcome = type(exc).__name__
                    raise
                finally:
                    metrics.firestore_call_ended(name, outcome, time.perf_counter() - started)

            return measured()

        return stream


@dataclass(frozen=True)
class _Clients:
    client: firestore.Client
    api: Measured
    loop: asyncio.AbstractEventLoop
    async_api: MeasuredAsync
    metadata: tuple[tuple[str, str], ...]  # sent with every raw request
    # Concurrency limits shared by the aggregation calls in flight (by limit).
    gates: dict[int, asyncio.Semaphore] = field(default_factory=dict)


class Connection:
    """One project's clients, event loop and retry policy, shared by the
    gateway's parts (gateway.py). Only they see it: the gateway keeps it to
    itself, so nothing outside revassure/firestore/ reaches a raw client."""

    def __init__(self, project: str, *, retry_deadline: float = 60.0, call_timeout: float = 30.0):
        self.project = project
        self.database = f"projects/{project}/databases/(default)"
        self.documents = f"{self.database}/documents"
        self.retry_deadline = retry_deadline
        self.call_timeout = call_timeout
        transient = gretry.if_exception_type(*TRANSIENT_ERRORS)
        self.retry = gretry.Retry(predicate=transient, timeout=retry_deadline, **BACKOFF)
        self.retry_in_transaction = gretry.Retry(
            predicate=gretry.if_exception_type(*TRANSIENT_IN_TRANSACTION), timeout=retry_deadline, **BACKOFF
        )
        self.async_retry = gretry_async.AsyncRetry(predicate=transient, timeout=retry_deadline, **BACKOFF)
        self.async_retry_in_transaction = gretry_async.AsyncRetry(
            predicate=gretry.if_exception_type(*TRANSIENT_IN_TRANSACTION), timeout=retry_deadline, **BACKOFF
        )
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._clients: _Clients | None = None

    @property
    def client(self) -> firestore.Client:
        """The public client."""
        return self._process_clients().client

    @property
    def api(self) -> FirestoreClient:
        """The generated client, for raw requests (pass retry, timeout and metadata)."""
        return cast(FirestoreClient, self._process_clients().api)  # Measured passes every call through

    @property
    def async_api(self) -> FirestoreAsyncClient:
        """The generated asyncio client; use it in coroutines given to `submit`."""
        return cast(FirestoreAsyncClient, self._process_clients().async_api)  # the same, measured

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """gRPC metadata for raw requests (the generated client adds the routing header)."""
        return self._process_clients().metadata

    @property
    def gates(self) -> dict[int, asyncio.Semaphore]:
        """Concurrency limits shared by the aggregation calls in flight (by limit)."""
        return self._process_clients().gates

    def submit(self, coro: Coroutine) -> Future:
        """Run a coroutine on this process's gateway event loop."""
        return asyncio.run_coroutine_threadsafe(coro, self._process_clients().loop)

    def document(self, collection: str, doc_id: str) -> str:
        """A document's full name, as raw requests want it."""
        return f"{self.documents}/{collection}/{doc_id}"

    def connect(self) -> None:
        """Make this process's clients now, rather than at the first call: they
        bind to the address FIRESTORE_EMULATOR_HOST names at this moment."""
        self._process_clients()

    def close(self) -> None:
        """Let go of this process's clients: their channels close and the event
        loop's thread ends (a call afterwards connects again). A process that
        talks to one project never needs it; one that moves between many (the
        tests make a project each) would otherwise keep a thread and three
        channels to Firestore for every project it ever used, and slow down."""
        with self._lock:
            clients, ours = self._clients, self._pid == os.getpid()
            self._clients, self._pid = None, None
        if clients is None or not ours:
            return  # nothing made here, or made by the parent process: the parent's to close
        clients.api.transport.close()
        loop = clients.loop
        try:
            asyncio.run_coroutine_threadsafe(clients.async_api.transport.close(), loop).result(CLOSE_TIMEOUT)
        finally:
            loop.call_soon_threadsafe(loop.stop)

    def _process_clients(self) -> _Clients:
        pid = os.getpid()
        if self._pid != pid or self._clients is None:
            with self._lock:
                if self._pid != pid or self._clients is None:
                    # None yet, or inherited from a parent process: unusable there.
                    self._clients = self._connect()
                    self._pid = pid
        return self._clients

    def _connect(self) -> _Clients:
        emulator = os.environ.get("FIRESTORE_EMULATOR_HOST") or None
        # The public client reads the same variable when it is made, just now.
        client = firestore.Client(project=self.project)
        resource = ("google-cloud-resource-prefix", self.database)
        if emulator:
            # The emulators' owner token: Firebase's emulator skips security rules for it.
            metadata: tuple[tuple[str, str], ...] = (resource, ("authorization", "Bearer owner"))
            api = FirestoreClient(
                transport=FirestoreGrpcTransport(
                    channel=grpc.insecure_channel(emulator, options=_CHANNEL_OPTIONS)
                )
            )
        else:
            metadata = (resource,)
            api = FirestoreClient()  # Google's Firestore, default credentials
        loop = asyncio.new_event_loop()
        threading.Thread(target=_serve, args=(loop,), name="firestore-gateway", daemon=True).start()
        async_api = asyncio.run_coroutine_threadsafe(_async_api(emulator), loop).result()
        return _Clients(
            client=client,
            api=Measured(api),
            loop=loop,
            async_api=MeasuredAsync(async_api),
            metadata=metadata,
        )


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    """The gateway's event loop thread: runs until close() stops it."""
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        # What was still in flight (the calls of a failed read) ends cancelled, as asyncio.run ends it.
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()


async def _async_api(emulator: str | None) -> FirestoreAsyncClient:
    # Made on the loop it will run on: an asyncio channel belongs to its loop.
    if emulator:
        channel = grpc.aio.insecure_channel(emulator, options=_CHANNEL_OPTIONS)
        return FirestoreAsyncClient(transport=FirestoreGrpcAsyncIOTransport(channel=channel))
    return FirestoreAsyncClient()
