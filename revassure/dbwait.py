"""How long a write may wait for a lock the database holds for someone else.

SQLite has one write lock for the whole file: a writer waits for it up to the
connection's busy timeout (20 s by default here, which the workers need), then
fails with "database is locked". PostgreSQL waits for a table or row lock as
long as it takes unless `lock_timeout` says otherwise. A request that must
answer a caller quickly (the payment provider's webhook) waits at most
`seconds` instead, and then fails with OperationalError, which it turns into
an answer the caller retries.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import DatabaseError, connection


@contextmanager
def short_write_wait(seconds: float) -> Iterator[None]:
    """Writes on the default connection inside wait at most `seconds` for a lock.

    Outside a transaction only (in one, the setting would apply to the
    transaction's other statements too, and SQLite takes the write lock at
    BEGIN): the caller's statements then commit one by one."""
    vendor = connection.vendor
    if vendor not in ("sqlite", "postgresql") or connection.in_atomic_block:
        yield
        return
    millis = max(int(seconds * 1000), 1)
    with connection.cursor() as cursor:
        if vendor == "sqlite":
            cursor.execute(f"PRAGMA busy_timeout = {millis}")
        else:
            cursor.execute(f"SET lock_timeout = {millis}")
    try:
        yield
    finally:
        _restore(vendor)


def _restore(vendor: str) -> None:
    if connection.connection is None:
        return  # closed by a failure meanwhile: the next connection starts with the defaults
    try:
        with connection.cursor() as cursor:
            if vendor == "sqlite":
                cursor.execute(f"PRAGMA busy_timeout = {_sqlite_busy_millis()}")
            else:
                cursor.execute("RESET lock_timeout")
    except DatabaseError:
        connection.close()  # never leave the short wait on a connection others reuse


def _sqlite_busy_millis() -> int:
    """The connection's own busy timeout (settings' OPTIONS['timeout'], sqlite3's default 5 s)."""
    return int(settings.DATABASES["default"].get("OPTIONS", {}).get("timeout", 5) * 1000)
