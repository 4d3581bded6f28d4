"""The process-side Prometheus metrics: counters and histograms the apps move.

The names are the interface (docs/observability.md lists them). Gauges that
describe the database (last run, open alerts, queue depth, freeze) are not here:
observability/collector.py reads them at scrape time, so they are right
whichever process serves the scrape.

Several processes (gunicorn workers, django-q2 workers) each count their own
share: with PROMETHEUS_MULTIPROC_DIR set (it must be in the environment before
prometheus_client is first imported; every entry point loads the settings
first, and settings import nothing that imports it) each process writes its
values to files there and a scrape sums them (prometheus-client's
multiprocess mode). The directory is wiped when the service starts (the
Dockerfile's entry, `make demo`, the tests).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram

PREFIX = "revassure"

RECONCILIATION_RUNS = Counter(
    f"{PREFIX}_reconciliation_runs_total", "Reconciliation runs that ended, by status.", ["status"]
)
RECONCILIATION_DURATION = Histogram(
    f"{PREFIX}_reconciliation_duration_seconds",
    "Time from a reconciliation run's start to its end.",
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200),
)
WALLETS_CHECKED = Counter(f"{PREFIX}_wallets_checked", "Wallets checked by completed reconciliation runs.")
WEBHOOK_DELIVERIES = Counter(
    f"{PREFIX}_webhook_deliveries",
    "Provider webhook deliveries by outcome (rejected: a bad or stale signature).",
    ["outcome"],
)
REPLAY_EVENTS = Counter(
    f"{PREFIX}_replay_events", "Events handled by data migrations, by outcome.", ["outcome"]
)
BALANCE_REQUESTS = Counter(
    f"{PREFIX}_balance_requests",
    "Transitions of heals and manual adjustments into a state.",
    ["kind", "state"],
)
FIRESTORE_CALLS = Counter(
    f"{PREFIX}_firestore_calls",
    "Calls the gateway made to Firestore, by method and outcome.",
    ["method", "outcome"],
)
FIRESTORE_CALL_DURATION = Histogram(
    f"{PREFIX}_firestore_call_duration_seconds",
    "Time of one Firestore call (a streamed call: until its last response).",
    ["method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
WATCHER_DETECTION_LATENCY = Histogram(
    f"{PREFIX}_watcher_detection_latency_seconds",
    "Time from a write's commit to its wallet's check by the real-time watcher "
    "(a drift: to the break recorded).",
    buckets=(0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2.5, 5, 10, 30, 60),
)
WATCHER_LAST_EVENT = Gauge(
    f"{PREFIX}_watcher_last_event_timestamp_seconds",
    "Commit time (Unix seconds) of the last write the real-time watcher received.",
    multiprocess_mode="max",
)
WATCHER_CHECKS = Counter(f"{PREFIX}_watcher_checks", "Wallets the real-time watcher checked.")
WATCHER_DRIFTS = Counter(f"{PREFIX}_watcher_drifts", "Drifts the real-time watcher found and recorded.")

# Every outcome the exported alert rules (observability/rule_export.py) count is
# a series from the start, at 0: a counter whose series first appears at 1 shows
# no increase() to Prometheus, so the first failed run after a restart would pass unseen.
for _status in ("completed", "failed"):
    RECONCILIATION_RUNS.labels(status=_status)
for _outcome in ("applied", "duplicate", "deferred", "quarantined", "failed", "rejected", "unstored"):
    WEBHOOK_DELIVERIES.labels(outcome=_outcome)


def run_ended(*, status: str, wallets_checked: int = 0, duration_seconds: float | None = None) -> None:
    RECONCILIATION_RUNS.labels(status=status).inc()
    if wallets_checked:
        WALLETS_CHECKED.inc(wallets_checked)
    if duration_seconds is not None:
        RECONCILIATION_DURATION.observe(duration_seconds)


def webhook_delivery(outcome: str, count: int = 1) -> None:
    if count:
        WEBHOOK_DELIVERIES.labels(outcome=outcome).inc(count)


def replay_events(counts: dict[str, int]) -> None:
    for outcome, count in counts.items():
        if count:
            REPLAY_EVENTS.labels(outcome=outcome).inc(count)


def balance_request(*, kind: str, state: str) -> None:
    BALANCE_REQUESTS.labels(kind=kind, state=state).inc()


def firestore_call_ended(method: str, outcome: str, seconds: float) -> None:
    FIRESTORE_CALLS.labels(method=method, outcome=outcome).inc()
    FIRESTORE_CALL_DURATION.labels(method=method).observe(seconds)


@contextmanager
def firestore_call(method: str) -> Iterator[None]:
    """Count and time one Firestore call: outcome `ok` or the error's class name."""
    start = time.perf_counter()
    outcome = "ok"
    try:
        yield
    except Exception as exc:
        outcome = type(exc).__name__
        raise
    finally:
        firestore_call_ended(method, outcome, time.perf_counter() - start)


def watcher_event(commit_timestamp: float) -> None:
    WATCHER_LAST_EVENT.set(commit_timestamp)


def watcher_checked(latencies: list[float], drifts: int) -> None:
    WATCHER_CHECKS.inc(len(latencies))
    for seconds in latencies:
        WATCHER_DETECTION_LATENCY.observe(max(0.0, seconds))
    if drifts:
        WATCHER_DRIFTS.inc(drifts)
