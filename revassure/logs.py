"""Correlation ids: one id follows a request or a schedule into every task it
starts and into every log line of that run.

The id lives in a contextvar. The middleware binds it for a request (taking a
caller's `X-Request-ID` when it looks sane), django-q2's signals carry it in the
task dict from enqueue to the worker (revassure/signals.py), and every binding
is reset afterwards, since workers are reused and sync-mode tasks run in the
caller's process.
"""

import contextvars
import logging
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.db import transaction

_correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("correlation_id", default=None)
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")
TASK_KEY = "correlation_id"


def new_correlation_id() -> str:
    return uuid.uuid4().hex


def get_correlation_id() -> str | None:
    return _correlation_id.get()


def set_correlation_id(value: str) -> contextvars.Token:
    """Bind `value` until reset_correlation_id(token) (revassure.signals, for tasks)."""
    return _correlation_id.set(value)


def reset_correlation_id(token: contextvars.Token) -> None:
    _correlation_id.reset(token)


@contextmanager
def bound_correlation_id(value: str | None = None) -> Iterator[str | None]:
    """Bind a correlation id (a new one unless given) for the duration of the block."""
    token = _correlation_id.set(value or new_correlation_id())
    try:
        yield _correlation_id.get()
    finally:
        _correlation_id.reset(token)


def on_commit(func: Callable[..., object], using: str | None = None) -> None:
    """transaction.on_commit that runs `func` with the correlation id bound now.

    Callbacks may run after the code that registered them has left its context
    (a test's captured callbacks, a savepoint released later); the task they
    enqueue must still carry the id of the request or schedule that asked.
    """
    context = contextvars.copy_context()
    transaction.on_commit(lambda: context.run(func), using=using)


class CorrelationIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = _correlation_id.get()
        return True


class CorrelationIdMiddleware:
    header = "HTTP_X_REQUEST_ID"

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.META.get(self.header, "")
        with bound_correlation_id(incoming if _SANE_ID.match(incoming) else None) as cid:
            request.correlation_id = cid
            response = self.get_response(request)
            response["X-Request-ID"] = cid
            return response


def correlation_id_or_blank() -> str:
    """A model field's default: the id of the request or task creating the row,
    so its page can show the id to find its log lines by."""
    return _correlation_id.get() or ""
