"""The gateway's clients and event loop, created lazily once per process.

django-q2 forks its workers, and a gRPC channel created before the fork hangs
in the child.
"""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import Future
from typing import Any

from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.api_core import retry_async as gretry_async
from google.api_core.gapic_v1 import method as gapic_method
from google.api_core.gapic_v1 import method_async as gapic_method_async
from google.cloud import firestore
from google.cloud.firestore_v1 import _helpers

from revassure.firestore.model import TRANSIENT_ERRORS, WALLETS

_is_transient = gretry.if_exception_type(*TRANSIENT_ERRORS)
BACKOFF_INITIAL, BACKOFF_MAX, BACKOFF_MULTIPLIER = 0.2, 10.0, 2.0  # seconds


class Connection:
    def __init__(self, project: str, *, retry_deadline: float = 60.0, call_timeout: float = 30.0):
        self.project = project
        self.call_timeout = call_timeout
        # Exponential backoff with full jitter (google-api-core draws each sleep
        # uniformly below the current cap), bounded by a total deadline.
        backoff = {"initial": BACKOFF_INITIAL, "maximum": BACKOFF_MAX, "multiplier": BACKOFF_MULTIPLIER}
        self.retry_deadline = retry_deadline
        self.retry = gretry.Retry(predicate=_is_transient, timeout=retry_deadline, **backoff)
        self.async_retry = gretry_async.AsyncRetry(predicate=_is_transient, timeout=retry_deadline, **backoff)
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._client: firestore.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._async_client: firestore.AsyncClient | None = None
        self._gates: dict[int, asyncio.Semaphore] = {}

    # -- clients -----------------------------------------------------------

    @property
    def client(self) -> firestore.Client:
        self._ensure_process()
        if self._client is None:
            with self._lock:
                if self._client is None:
                    client = firestore.Client(project=self.project)
                    transport = client._firestore_api._transport
                    _bind_begin_transaction(
                        transport, gapic_method.wrap_method, self.retry, self.call_timeout
                    )
                    self._client = client
        return self._client

    def _ensure_process(self) -> None:
        pid = os.getpid()
        if self._pid != pid:
            with self._lock:
                if self._pid != pid:
                    # Inherited from a parent process: unusable, start afresh.
                    self._client = None
                    self._loop = None
                    self._async_client = None
                    self._pid = pid

    def _submit(self, coro) -> Future:
        """Schedule a coroutine on this process's gateway event loop.

        The async client multiplexes many aggregation queries over one channel
        at a fraction of the per-call CPU cost of the threaded sync client.
        """
        self._ensure_process()
        if self._loop is None:
            with self._lock:
                if self._loop is None:
                    loop = asyncio.new_event_loop()
                    threading.Thread(target=loop.run_forever, name="firestore-gateway", daemon=True).start()
                    self._async_client = asyncio.run_coroutine_threadsafe(
                        self._make_async_client(), loop
                    ).result()
                    self._gates = {}
                    self._loop = loop
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def _make_async_client(self) -> firestore.AsyncClient:
        client = firestore.AsyncClient(project=self.project)
        transport = client._firestore_api._client._transport
        _bind_begin_transaction(
            transport, gapic_method_async.wrap_method, self.async_retry, self.call_timeout
        )
        return client

    def _wallet(self, uid: str):
        return self.client.collection(WALLETS).document(uid)

    def _document_name(self, collection: str, doc_id: str) -> str:
        return f"{self.client._database_string}/documents/{collection}/{doc_id}"

    def _decode(self, value) -> Any:
        return _helpers.decode_value(value, self.client)


def _bind_begin_transaction(transport, wrap_method, retry, timeout: float) -> None:
    """Make BeginTransaction follow the gateway's retry policy and deadline.

    The library's @transactional begins a transaction without passing a retry,
    so it would fall back on the generated client's default (60 s of retries,
    whatever FIRESTORE_RETRY_DEADLINE says).
    """
    transport._wrapped_methods[transport.begin_transaction] = wrap_method(
        transport.begin_transaction, default_retry=retry, default_timeout=timeout
    )


def real_error(exc: ValueError) -> BaseException:
    """When BeginTransaction itself fails, google-cloud-firestore tries to roll
    back a transaction that never began and raises "The transaction has no
    transaction ID, so it cannot be rolled back" in place of the real error;
    that error is the ValueError's context."""
    if isinstance(exc.__context__, gexc.GoogleAPIError):
        return exc.__context__
    return exc


def unmasked(transactional, transaction):
    try:
        return transactional(transaction)
    except ValueError as exc:
        raise real_error(exc) from None
