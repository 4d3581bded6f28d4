"""Gauges that describe the database, computed at scrape time.

Whichever process serves the scrape, and after any restart, these read the same
rows: nothing here lives in process memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from django.conf import settings
from django.db.models import Count, Q
from django_q.brokers import get_broker
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from backfill import drain
from backfill.models import DataMigration, MigrationStatus
from observability.models import ACTIVE, Alert, AlertRule
from reconciliation import break_age, watcher
from reconciliation.models import (
    BalanceRequest,
    ReconciliationRun,
    RequestState,
    RunStatus,
    ViolationKind,
    WatcherState,
)
from revassure import freeze
from revassure.metrics import PREFIX


def last_full_run() -> ReconciliationRun | None:
    """The last completed run over every wallet (a run scoped to some uids says
    nothing about the others)."""
    return (
        ReconciliationRun.objects.filter(status=RunStatus.COMPLETED, scope_uids=[])
        .order_by("-finished_at", "-pk")
        .first()
    )


def migration_ratio(migration: DataMigration) -> float:
    expected = migration.parameters.get("expected") or migration.total
    if not expected:
        return 0.0
    return min(1.0, migration.processed / expected)


def gauge(
    name: str, documentation: str, value: float | None = None, labels: Iterable[str] = ()
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(f"{PREFIX}_{name}", documentation, labels=list(labels) or None)
    if value is not None:
        family.add_metric([], value)
    return family


class DatabaseCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        run = last_full_run()
        yield gauge(
            "reconciliation_last_success_timestamp_seconds",
            "When the last completed full reconciliation run finished (unix time; 0: never).",
            run.finished_at.timestamp() if run and run.finished_at else 0,
        )
        violations = gauge(
            "reconciliation_violations",
            "Violations found by the last completed full run, by kind.",
            labels=["kind"],
        )
        violations.add_metric([ViolationKind.DRIFT], run.drift_count if run else 0)
        violations.add_metric([ViolationKind.MALFORMED], run.malformed_count if run else 0)
        yield violations
        yield gauge(
            "reconciliation_drift_points",
            "Total absolute drift of the last completed full run.",
            run.total_abs_drift if run else 0,
        )
        yield gauge(
            "liability_difference_points",
            "Sum of wallets minus sum of ledgers, last completed full run.",
            run.liability_difference if run else 0,
        )
        yield gauge(
            "balance_requests_awaiting_approval",
            "Heals and manual adjustments waiting for a decision.",
            BalanceRequest.objects.filter(state=RequestState.PROPOSED).count(),
        )
        yield gauge("freeze_active", "1 while balance changes are frozen.", 1 if freeze.current() else 0)
        depth = gauge(
            "task_queue_depth",
            "Tasks waiting in the django-q2 broker, by cluster (the money cluster and the notify one).",
            labels=["cluster"],
        )
        for cluster in (settings.Q_CLUSTER_NAME, settings.NOTIFY_CLUSTER_NAME):
            depth.add_metric([cluster], get_broker(cluster).queue_size() or 0)
        yield depth
        waiting, oldest = drain.queue_state()
        yield gauge(
            "webhook_deliveries_waiting",
            "Webhook deliveries stored and waiting for a worker to apply them.",
            waiting,
        )
        yield gauge(
            "webhook_oldest_waiting_seconds",
            "How long the oldest webhook delivery still waiting has waited (0: none waits).",
            oldest,
        )
        progress = gauge(
            "migration_progress_ratio",
            "Share of a running data migration's items handled.",
            labels=["migration"],
        )
        running = DataMigration.objects.filter(Q(status=MigrationStatus.RUNNING))
        for migration in running.only("pk", "parameters", "total", "processed"):
            progress.add_metric([str(migration.pk)], migration_ratio(migration))
        yield progress
        opened = gauge(
            "alerts_open", "Alerts open (acknowledged and silenced too), by rule.", labels=["rule"]
        )
        counts = dict(
            Alert.objects.filter(state__in=ACTIVE)
            .values("rule__name")
            .annotate(n=Count("pk"))
            .values_list("rule__name", "n")
        )
        for name in AlertRule.objects.values_list("name", flat=True):
            opened.add_metric([name], counts.get(name, 0))
        yield opened
        open_breaks = gauge("breaks_open", "Open breaks (wallets still wrong), by age.", labels=["bucket"])
        for bucket, count in break_age.open_by_bucket().items():
            open_breaks.add_metric([bucket], count)
        yield open_breaks
        up = gauge(
            "watcher_up",
            "1 while the real-time watcher listens and keeps up; 0 when down or behind, by project.",
            labels=["project"],
        )
        heartbeat = gauge(
            "watcher_heartbeat_timestamp_seconds",
            "When the real-time watcher last said it was alive (unix time), by project.",
            labels=["project"],
        )
        for state in WatcherState.objects.all():
            up.add_metric([state.project], 1 if watcher.health(state).status == "up" else 0)
            heartbeat.add_metric([state.project], state.heartbeat_at.timestamp() if state.heartbeat_at else 0)
        yield up
        yield heartbeat
