"""The real-time watcher: drift found within a second of the write that made it.

    Watcher(gateway=...).run(stop)   what `manage.py watch_ledger` runs.

It listens to the writes of wallets and ledger entries (the gateway's
`listen_writes`) and notes each written wallet as pending, once: a wallet is
checked WATCHER_DEBOUNCE_SECONDS after the first write of a burst, so the
writes that land together in that window are checked together. The check is
the daily run's re-check of a candidate (`read_wallets_and_ledgers`: the
wallet and its ledger sum read in one read-only transaction, so a payment's
entry and increment committed together are seen both or neither). A wallet
found drifting is recorded the way every drift is: a scoped reconciliation
run (trigger `watcher`) over it, sealed, whose violation opens or sights its
break; the alert rules are evaluated at once. A written wallet whose break is
still watched and is now clean goes into that run too, so the break closes.

It never misses a write: `WatcherState.resume_at` is the read time up to which
every write has been checked (the listeners' progress, held back before the
earliest write still pending). A restart, or a stream that ended, listens
again from there: the listeners' first snapshots hand over every document
whose commit time is after it (its `update_time`, set by Firestore, not the
`updatedAt`/`createdAt` fields a writer may leave out), and those wallets are
checked. A check that fails (Firestore away) puts its wallets back. Through
Eventarc (reconciliation/pending_checks.py) a wallet waits in the database for
a worker's check, under a lease, and the minute's sweep queues a check for what
a lost task or a dead worker left.
See docs/realtime.md for the limits and the costs.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from reconciliation import services
from reconciliation.models import (
    OPEN_BREAK_STATES,
    Break,
    BreakSighting,
    RunTrigger,
    WatcherState,
)
from revassure import alerting, metrics
from revassure.firestore import FirestoreError, FirestoreGateway, Listener, Write
from revassure.flags import FeatureDisabled
from revassure.ledger import balances_agree

log = logging.getLogger(__name__)

RECHECK_CONCURRENCY = 16
RECONNECT_BACKOFF = {"initial": 0.5, "maximum": 30.0, "multiplier": 2.0}  # seconds
TICK = 0.02  # seconds between looks at the pending wallets
FAILED_CHECK_PAUSE = 1.0  # seconds before wallets whose check failed are checked again
EPSILON = timedelta(microseconds=1)


@dataclass(frozen=True)
class Health:
    status: str  # "up", "behind" or "down"
    since: datetime | None  # when it went down or fell behind
    text: str


def health(state: WatcherState | None, now: datetime | None = None) -> Health:
    """Up, behind (a written wallet waiting for its check longer than
    WATCHER_MAX_LAG_SECONDS) or down (no heartbeat for three heartbeats and
    10 s, or not listening): for the dashboard, the metrics and the alert rule."""
    now = now or timezone.now()
    if state is None or state.heartbeat_at is None:
        if state is None or state.started_at is None:
            return Health("down", None, "the watcher has never run (manage.py watch_ledger)")
        # Starting: down since it started, so the rule's minutes count from then
        # (a watcher started a moment before the first evaluation is no alert).
        return Health("down", state.started_at, f"started at {iso(state.started_at)}, no heartbeat yet")
    silent = timedelta(seconds=3 * settings.WATCHER_HEARTBEAT_SECONDS + 10)
    if state.heartbeat_at < now - silent:
        return Health("down", state.heartbeat_at, f"no heartbeat since {iso(state.heartbeat_at)}")
    if not state.connected:
        since = state.disconnected_at or state.heartbeat_at
        return Health("down", since, f"not listening to Firestore since {iso(since)}")
    lag = timedelta(seconds=settings.WATCHER_MAX_LAG_SECONDS)
    if state.oldest_pending_at is not None and state.oldest_pending_at < now - lag:
        return Health(
            "behind",
            state.oldest_pending_at + lag,
            f"{state.pending} written wallets waiting for their check, the oldest written at "
            f"{iso(state.oldest_pending_at)}",
        )
    return Health("up", None, "listening; every write checked within the debounce")


@dataclass
class Pending:
    first_write: datetime  # the earliest commit time among its writes not yet checked
    due: float  # time.monotonic() of its check


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class Watcher:
    def __init__(
        self,
        *,
        gateway: FirestoreGateway,
        on_drift: Callable[[dict[str, Any]], None] = lambda drift: None,
        debounce: float | None = None,
        heartbeat: float | None = None,
    ):
        self.gateway = gateway
        self.on_drift = on_drift
        self.debounce = settings.WATCHER_DEBOUNCE_SECONDS if debounce is None else debounce
        self.heartbeat = settings.WATCHER_HEARTBEAT_SECONDS if heartbeat is None else heartbeat
        self._lock = threading.Lock()
        self._pending: dict[str, Pending] = {}
        self._checking: dict[str, datetime] = {}
        self._listener: Listener | None = None
        self._resume_at: datetime | None = None
        self._last_event_at: datetime | None = None
        self.listening = threading.Event()  # set while both listeners are up
        self._disconnected_at: datetime | None = timezone.now()

    # -- the listeners' side (their threads) -----------------------------------------

    def on_writes(self, writes: list[Write], read_time: datetime) -> None:
        if not writes:
            return
        due = time.monotonic() + self.debounce
        with self._lock:
            for write in writes:
                pending = self._pending.get(write.uid)
                if pending is None:
                    self._pending[write.uid] = Pending(write.write_time, due)
                elif write.write_time < pending.first_write:
                    pending.first_write = write.write_time
            latest = max(write.write_time for write in writes)
            if self._last_event_at is None or latest > self._last_event_at:
                self._last_event_at = latest
        metrics.watcher_event(latest.timestamp())

    # -- progress ----------------------------------------------------------------------

    def resume_point(self) -> datetime | None:
        """Every write committed up to this time has been checked."""
        listened = self._listener.read_time() if self._listener is not None else None
        point = listened or self._resume_at
        with self._lock:
            waiting = [p.first_write for p in self._pending.values()] + list(self._checking.values())
        if waiting and point is not None:
            point = min(point, min(waiting) - EPSILON)
        return point

    def save_state(self, *, connected: bool) -> None:
        self._resume_at = self.resume_point()
        with self._lock:
            waiting = [p.first_write for p in self._pending.values()] + list(self._checking.values())
        now = timezone.now()
        if connected:
            self._disconnected_at = None
        elif self._disconnected_at is None:
            self._disconnected_at = now
        WatcherState.objects.update_or_create(
            project=self.gateway.project,
            defaults={
                "resume_at": self._resume_at,
                "heartbeat_at": now,
                "last_event_at": self._last_event_at,
                "connected": connected,
                "disconnected_at": self._disconnected_at,
                "pending": len(waiting),
                "oldest_pending_at": min(waiting, default=None),
            },
        )

    # -- the main loop -----------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Listen, check and record until `stop` is set; reconnect with backoff."""
        state, _ = WatcherState.objects.get_or_create(project=self.gateway.project)
        self._resume_at, self._last_event_at = state.resume_at, state.last_event_at
        WatcherState.objects.filter(pk=state.pk).update(started_at=timezone.now())
        if self._resume_at is None:
            log.info(
                "watcher: first start, no resume point: checking the writes from now on "
                "(the daily run covers what came before)",
                extra={"project": self.gateway.project},
            )
        pauses = _reconnect_pauses()
        try:
            while not stop.is_set():
                since = self.resume_point()
                try:
                    self._listener = self.gateway.listen_writes(self.on_writes, since=since)
                except FirestoreError as exc:
                    pause = next(pauses)
                    log.warning(
                        "watcher: cannot listen to Firestore; trying again",
                        extra={"error": str(exc), "retry_in_seconds": round(pause, 1)},
                    )
                    self.save_state(connected=False)
                    stop.wait(pause)
                    continue
                pauses = _reconnect_pauses()
                self.listening.set()
                if since is not None:
                    with self._lock:
                        missed = len(self._pending)
                    log.info(
                        "watcher: listening from the resume point; re-checking the wallets written since",
                        extra={"resume_at": iso(since), "wallets": missed},
                    )
                else:
                    log.info("watcher: listening")
                self._serve(stop)
                if not stop.is_set():
                    log.warning("watcher: a Listen stream ended; listening again from the resume point")
                    self.save_state(connected=False)
        finally:
            if self._listener is not None:
                self._listener.stop()
            self.save_state(connected=False)

    def _serve(self, stop: threading.Event) -> None:
        listener = self._listener
        assert listener is not None  # started by run() just before
        next_beat = 0.0
        while not stop.is_set() and listener.active:
            self.check_due()
            if time.monotonic() >= next_beat:
                self.save_state(connected=True)
                next_beat = time.monotonic() + self.heartbeat
            stop.wait(TICK)
        self.listening.clear()
        # Progress so far is kept for the next listener.
        self._resume_at = self.resume_point()
        listener.stop()
        self._listener = None

    # -- checking ----------------------------------------------------------------------

    def check_due(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        with self._lock:
            due = {uid: p.first_write for uid, p in self._pending.items() if p.due <= now}
            for uid in due:
                del self._pending[uid]
            self._checking.update(due)
        if not due:
            return []
        try:
            drifts = self.check(due)
        except Exception:
            log.exception("watcher: checking wallets failed; they will be checked again")
            with self._lock:
                for uid, first_write in due.items():
                    pending = self._pending.get(uid)
                    if pending is None or first_write < pending.first_write:
                        self._pending[uid] = Pending(first_write, time.monotonic() + FAILED_CHECK_PAUSE)
            return []
        finally:
            with self._lock:
                for uid in due:
                    self._checking.pop(uid, None)
        return drifts

    def check(self, written: dict[str, datetime]) -> list[dict[str, Any]]:
        return check_written(written, gateway=self.gateway, on_drift=self.on_drift)


def check_written(
    written: dict[str, datetime],
    *,
    gateway: FirestoreGateway,
    on_drift: Callable[[dict[str, Any]], None] = lambda drift: None,
) -> list[dict[str, Any]]:
    """Re-check the written wallets ({uid: commit time of the first write}); record
    the drifts found and return them. The watcher's and the Eventarc endpoint's check."""
    uids = sorted(written)
    states = gateway.read_wallets_and_ledgers(uids, concurrency=RECHECK_CONCURRENCY)
    drifting, clean = list[str](), list[str]()
    for uid in uids:
        state = states[uid]
        points = state.points if state.exists else 0
        (clean if balances_agree(points, state.ledger.total) else drifting).append(uid)
    watched = {b.uid: b for b in Break.objects.filter(watching=True, uid__in=uids)}
    # A drift its open break shows already, unchanged, is not news: no run for it.
    news = [
        uid
        for uid in drifting
        if not (
            uid in watched
            and watched[uid].status in OPEN_BREAK_STATES
            and (watched[uid].wallet_points, watched[uid].ledger_sum)
            == (states[uid].points, states[uid].ledger.total)
        )
    ]
    closing = [uid for uid in clean if uid in watched]
    drifts = _record(news, closing, written, gateway, on_drift) if news or closing else []
    checked_at = timezone.now()
    metrics.watcher_checked(
        [(checked_at - written[uid]).total_seconds() for uid in uids if uid not in news], len(drifts)
    )
    return drifts


def _record(
    drifting: list[str],
    closing: list[str],
    written: dict[str, datetime],
    gateway: FirestoreGateway,
    on_drift: Callable[[dict[str, Any]], None],
) -> list[dict]:
    try:
        run = services.run_inline(
            actor=None, trigger=RunTrigger.WATCHER, gateway=gateway, uids=drifting + closing
        )
    except FeatureDisabled as exc:
        log.warning("watcher: drift not recorded: %s", exc, extra={"uids": drifting})
        return []
    detected_at = timezone.now()
    violations = list(run.violations.filter(uid__in=drifting).order_by("uid"))
    breaks = dict(
        BreakSighting.objects.filter(violation__in=violations).values_list("violation_id", "brk_id")
    )
    drifts = []
    for violation in violations:
        drift = {
            "uid": violation.uid,
            "delta": violation.delta,
            "wallet_points": violation.wallet_points,
            "ledger_sum": violation.ledger_sum,
            "kind": violation.kind,
            "write_time": iso(written[violation.uid]),
            "detected_at": iso(detected_at),
            "break_id": breaks.get(violation.pk),
        }
        drifts.append(drift)
        log.warning("watcher: drift recorded", extra={**drift, "run_id": run.pk})
    metrics.watcher_checked([(detected_at - written[uid]).total_seconds() for uid in drifting], 0)
    if drifts:
        alerting.evaluate_now()
    for drift in drifts:
        on_drift(drift)
    return drifts


def _reconnect_pauses():
    """Pauses between attempts to listen again: jittered, doubling up to the maximum."""
    bound = RECONNECT_BACKOFF["initial"]
    while True:
        yield random.uniform(0.0, bound)
        bound = min(bound * RECONNECT_BACKOFF["multiplier"], RECONNECT_BACKOFF["maximum"])
