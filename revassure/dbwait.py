"""How long a write may wait for a lock the database holds for someone else.

SQLite has one write lock for the whole file: a writer waits for it up to the
connection's busy timeout (20 s here, which the workers need), then fails with
"database is locked". A request that must answer its caller quickly (the
payment provider's webhook) waits at most `seconds` instead, then fails with
OperationalError, which it turns into an answer the caller retries.

PostgreSQL needs nothing here: an INSERT never waits for another transaction's
row locks (only for a table lock, as a migration takes; `lock_timeout`, where
it is configured, ends that wait with OperationalError too). Setting and
resetting lock_timeout around each insert would cost two round trips on every
request of a benchmarked path, for a wait that does not happen.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import DatabaseError, connection


@contextmanager
def short_write_wait(seconds: float) -> Iterator[None]:
    """Writes on the default connection inside wait at most `seconds` for SQLite's
    write lock. Outside a transaction only (in one, the setting would apply to
    the transaction's other statements too): the caller's statements then
    commit one by one."""
    if connection.vendor != "sqlite" or connection.in_atomic_block:
        yield
        return
    busy_timeout(max(int(seconds * 1000), 1))
    try:
        yield
    finally:
        _restore()


def _restore() -> None:
    if connection.connection is None:
        return  # closed by a failure meanwhile: the next connection starts with the default
    try:
        busy_timeout(_busy_millis())
    except DatabaseError:
        connection.close()  # never leave the short wait on a connection others reuse


def busy_timeout(millis: int) -> None:
    """On the DB-API connection itself: through Django's cursor, the two PRAGMAs
    of every webhook request cost twice as much (docs/scaling.md)."""
    connection.ensure_connection()
    with connection.wrap_database_errors:  # as Django's errors, as through its cursor
        connection.connection.execute(f"PRAGMA busy_timeout = {millis}")


def _busy_millis() -> int:
    """The connection's own busy timeout (settings' OPTIONS['timeout'], sqlite3's default 5 s)."""
    return int(settings.DATABASES["default"].get("OPTIONS", {}).get("timeout", 5) * 1000)
