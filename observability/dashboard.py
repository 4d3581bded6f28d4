"""The revenue-assurance dashboard on the admin index: what a person reads in
five seconds. Each tile is computed only for someone who may see what it links to."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db.models import Count
from django.db.models.functions import TruncDate
from django.utils import timezone

from backfill.models import (
    DataMigration,
    EventSource,
    MigrationStatus,
    ProviderEventDelivery,
    RejectedWebhook,
)
from observability import inbox
from observability.collector import last_full_run, migration_ratio
from observability.models import ACTIVE, Alert, AlertRule, AlertState, RuleName
from reconciliation import break_age, watcher
from reconciliation.models import ReconciliationRun, RunStatus, WatcherState
from revassure import flags
from revassure.formatting import points, signed
from revassure.refusals import may

CHART_DAYS = 30
CHART_WIDTH, CHART_HEIGHT, CHART_PAD = 600, 140, 24


@dataclass
class Verdict:
    state: str  # green, drifting, stale, failing
    why: str


def verdict(now: datetime) -> Verdict:
    last = ReconciliationRun.objects.filter(status__in=[RunStatus.COMPLETED, RunStatus.FAILED]).first()
    if last is not None and last.status == RunStatus.FAILED:
        return Verdict("failing", f"the last run (#{last.pk}) failed: {last.error[:120]}")
    if DataMigration.objects.filter(status=MigrationStatus.FAILED).exists():
        return Verdict("failing", "a data migration failed")
    run = last_full_run()
    stale_hours = AlertRule.objects.filter(name=RuleName.RECONCILIATION_STALE).values_list(
        "threshold", flat=True
    )
    hours = stale_hours[0] if stale_hours else 26
    if run is None:
        return Verdict("stale", "no full reconciliation run has completed yet")
    assert run.finished_at is not None  # completed: finished
    if run.finished_at < now - timedelta(hours=hours):
        return Verdict("stale", f"no completed full run for more than {hours} hours")
    if run.violations_count or run.liability_difference:
        return Verdict(
            "drifting",
            f"the last full run found {points(run.violations_count)} violations; "
            f"wallets minus ledgers is {signed(run.liability_difference)} points",
        )
    return Verdict("green", "the last full run found every wallet equal to its ledger")


def history(now: datetime) -> list[dict]:
    """Per day of the last 30, the last completed full run's violations and drift."""
    since = now - timedelta(days=CHART_DAYS)
    runs = (
        ReconciliationRun.objects.filter(status=RunStatus.COMPLETED, scope_uids=[], finished_at__gte=since)
        .annotate(day=TruncDate("finished_at"))
        .order_by("finished_at")
        .values("day", "violations_count", "total_abs_drift")
    )
    by_day = {row["day"]: row for row in runs}  # the last run of the day wins
    return [by_day[day] for day in sorted(by_day)]


def chart(points: list[dict], now: datetime) -> dict:
    """SVG polylines (violations, drift), each scaled to its own maximum."""
    start = (now - timedelta(days=CHART_DAYS)).date()
    width = CHART_WIDTH - 2 * CHART_PAD
    height = CHART_HEIGHT - 2 * CHART_PAD

    def line(field: str) -> tuple[str, int]:
        top = max((p[field] for p in points), default=0) or 1
        coordinates = []
        for p in points:
            x = CHART_PAD + width * (p["day"] - start).days / CHART_DAYS
            y = CHART_PAD + height - height * p[field] / top
            coordinates.append(f"{x:.1f},{y:.1f}")
        return " ".join(coordinates), max((p[field] for p in points), default=0)

    violations, violations_max = line("violations_count")
    drift, drift_max = line("total_abs_drift")
    return {
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "pad": CHART_PAD,
        "base": CHART_HEIGHT - CHART_PAD,
        "right": CHART_WIDTH - CHART_PAD,
        "violations": violations,
        "violations_max": violations_max,
        "drift": drift,
        "drift_max": drift_max,
        "days": len(points),
        "start": start,
        "end": now.date(),
    }


def tiles(user: User) -> dict:
    now = timezone.now()
    context: dict = {}
    if may(user, "reconciliation.view_reconciliationrun"):
        context["verdict"] = verdict(now)
        context["run"] = last_full_run()
        context["chart"] = chart(history(now), now)
    if may(user, "observability.view_alert"):
        active = Alert.objects.filter(state__in=ACTIVE).select_related("rule")
        by_state = dict(active.values_list("state").annotate(n=Count("pk")).order_by())
        context["alerts"] = {
            # Open: nobody has taken them up. Acknowledged and silenced are said apart.
            "count": by_state.get(AlertState.OPEN, 0),
            "acknowledged": by_state.get(AlertState.ACKNOWLEDGED, 0),
            "silenced": by_state.get(AlertState.SILENCED, 0),
            "latest": list(active[:5]),
        }
    if inbox.may_use(user):
        waiting = inbox.sections(user, now)
        context["inbox"] = {
            "count": sum(section.count for section in waiting),
            "sections": [section for section in waiting if section.count],
        }
    if may(user, "revassure.view_featureflag"):
        context["flags"] = [(name, flags.is_enabled(name)) for name in flags.known_flags()]
    if may(user, "backfill.view_datamigration"):
        running = DataMigration.objects.filter(status=MigrationStatus.RUNNING)
        context["migrations"] = [(m, round(100 * migration_ratio(m))) for m in running[:5]]
    if may(user, "backfill.view_providereventdelivery"):
        rows = (
            ProviderEventDelivery.objects.filter(
                source=EventSource.WEBHOOK, received_at__gte=now - timedelta(hours=24)
            )
            .values("status")
            .annotate(n=Count("pk"))
            .order_by("status")
        )
        context["deliveries"] = [(row["status"], row["n"]) for row in rows]
        if may(user, "backfill.view_rejectedwebhook"):
            context["rejected"] = RejectedWebhook.objects.filter(
                received_at__gte=now - timedelta(hours=24)
            ).count()
    if may(user, "reconciliation.view_reconciliationrun"):
        state = WatcherState.objects.filter(project=settings.GOOGLE_CLOUD_PROJECT).first()
        context["watcher"] = {"health": watcher.health(state, now), "state": state}
    if may(user, "reconciliation.view_break"):
        by_bucket = break_age.open_by_bucket(now)
        context["breaks"] = {
            "count": sum(by_bucket.values()),
            "buckets": [(name, break_age.bucket_label(name), n) for name, n in by_bucket.items()],
        }
    return context
