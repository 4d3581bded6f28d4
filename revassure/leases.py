"""Leases on work shared by machines: who holds a piece of work, and until when.

A worker that takes a piece of work (a chunk of a run, a run's listing, a
snapshot) writes its name and an expiry in the piece's row, and renews the
expiry while it works. A lease whose expiry has passed is free again: its
holder is taken for dead, and a sweep hands the work to another worker (the
Redis broker never hands out again a task a dead machine had taken).

Expiries are computed and compared by the database (revassure.dbclock), never
by the machine that asks: every machine then reads the one clock, and a few
seconds of skew between machines' clocks neither lets a live holder's lease
look lapsed nor keeps a dead one's work waiting longer.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable

from django.db import connections
from django.db.models import Q

from revassure import dbclock

log = logging.getLogger(__name__)


def holder() -> str:
    """This process as a lease names it: the machine's hostname and the process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


def machine_of(name: str) -> str:
    """The machine of a lease holder's name."""
    return name.rpartition(":")[0] or name


def lapsed(field: str = "lease_until") -> Q:
    """Rows whose lease has expired (by the database's clock)."""
    return Q(**{f"{field}__lt": dbclock.now()})


def free(field: str = "lease_until") -> Q:
    """Rows nobody holds: never taken, let go (null), or lapsed."""
    return Q(**{f"{field}__isnull": True}) | lapsed(field)


class Heartbeat:
    """Renews a lease in a thread of its own while the work goes on, so a live
    worker never loses its lease to a slow step (a big file, a slow backend):
    `renew()` (a conditional update, True while the lease is still this
    worker's) runs every third of the lease. `lost` is set once it returns
    False: the work was taken over, and the worker should stop.

        with Heartbeat(lambda: rows.filter(worker=me).update(lease_until=dbclock.ahead(s)) == 1, s) as beat:
            ...  # check beat.lost between steps
    """

    def __init__(self, renew: Callable[[], bool], lease_seconds: float):
        self.renew, self.every = renew, lease_seconds / 3
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="lease-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        try:
            while not self._stop.wait(self.every):
                if not self.renew():
                    self.lost = True
                    return
        except Exception:  # the database away: the lease runs out, as it would for a dead worker
            log.exception("lease heartbeat failed")
        finally:
            connections.close_all()  # this thread's own connection
