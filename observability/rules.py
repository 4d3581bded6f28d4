"""What each rule checks: {key: summary} of the conditions true now.

One function per rule, reading the database only. A rule that fires for one
thing at a time (the last run) uses the key ""; one that fires per object (a
migration) keys by it, so each opens and resolves on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from django.db.models import Min

from backfill.models import (
    DataMigration,
    EventSource,
    EventStatus,
    MigrationStatus,
    ProviderEventDelivery,
    RejectedWebhook,
)
from observability.collector import last_full_run
from observability.models import AlertRule, RuleName
from reconciliation import break_age, watcher
from reconciliation.models import (
    OPEN_BREAK_STATES,
    BalanceRequest,
    Break,
    ReconciliationRun,
    RequestState,
    RunStatus,
    WatcherState,
)
from revassure import freeze
from revassure.formatting import points, when

Firing = dict[str, str]


def violations_found(rule: AlertRule, now: datetime) -> Firing:
    run = last_full_run()
    if run is None or run.violations_count <= rule.threshold:
        return {}
    return {
        "": f"run {run.pk} found {run.violations_count} violations "
        f"({run.drift_count} drift, {run.malformed_count} malformed)"
    }


def drift_above(rule: AlertRule, now: datetime) -> Firing:
    run = last_full_run()
    if run is None or run.total_abs_drift <= rule.threshold:
        return {}
    return {
        "": f"run {run.pk}: total drift {points(run.total_abs_drift)} points (above {points(rule.threshold)})"
    }


def liability_mismatch(rule: AlertRule, now: datetime) -> Firing:
    run = last_full_run()
    if run is None or abs(run.liability_difference) <= rule.threshold:
        return {}
    return {"": f"run {run.pk}: wallets minus ledgers is {points(run.liability_difference)} points"}


def reconciliation_stale(rule: AlertRule, now: datetime) -> Firing:
    run = last_full_run()
    if run is None:
        return {"": "no full reconciliation run has completed yet"}
    assert run.finished_at is not None  # completed: finished
    if run.finished_at >= now - timedelta(hours=rule.threshold):
        return {}
    return {"": f"the last full run completed {when(run.finished_at)}, over {rule.threshold} h ago"}


def job_failed(rule: AlertRule, now: datetime) -> Firing:
    firing = {}
    last = ReconciliationRun.objects.filter(status__in=[RunStatus.COMPLETED, RunStatus.FAILED]).first()
    if last is not None and last.status == RunStatus.FAILED:
        firing["reconciliation"] = f"reconciliation run {last.pk} failed: {last.error[:200]}"
    for migration in DataMigration.objects.filter(status=MigrationStatus.FAILED).only("pk", "kind", "error"):
        firing[f"migration:{migration.pk}"] = f"data migration {migration.pk} failed: {migration.error[:200]}"
    return firing


def webhooks_unhealthy(rule: AlertRule, now: datetime) -> Firing:
    """Deliveries we stored but could not apply, or requests refused for their
    signature (someone sending with an old secret, or probing): either over its number."""
    since = now - timedelta(hours=1)
    bad = ProviderEventDelivery.objects.filter(
        source=EventSource.WEBHOOK,
        status__in=[EventStatus.QUARANTINED, EventStatus.FAILED],
        received_at__gte=since,
    ).count()
    rejected = RejectedWebhook.objects.filter(received_at__gte=since).count()
    rejected_limit = rule.second_threshold if rule.second_threshold is not None else REJECTED_DEFAULT
    found = []
    if bad > rule.threshold:
        found.append(f"{bad} webhook deliveries quarantined or failed in the last hour")
    if rejected > rejected_limit:
        found.append(f"{rejected} webhook requests rejected for their signature in the last hour")
    return {"": "; ".join(found)} if found else {}


def freeze_too_long(rule: AlertRule, now: datetime) -> Firing:
    event = freeze.current()
    if event is None or event.created_at >= now - timedelta(hours=rule.threshold):
        return {}
    return {"": f"balance changes frozen since {when(event.created_at)} by {event.actor}: {event.reason}"}


def approvals_waiting(rule: AlertRule, now: datetime) -> Firing:
    waiting = BalanceRequest.objects.filter(
        state=RequestState.PROPOSED, created_at__lt=now - timedelta(hours=rule.threshold)
    )
    found = waiting.aggregate(oldest=Min("created_at"))
    count = waiting.count()
    if not count:
        return {}
    return {"": f"{count} balance requests waiting for a decision, the oldest since {when(found['oldest'])}"}


def migration_stalled(rule: AlertRule, now: datetime) -> Firing:
    limit = now - timedelta(minutes=rule.threshold)
    firing = {}
    for migration in DataMigration.objects.filter(status=MigrationStatus.RUNNING):
        last = migration.heartbeat_at or migration.started_at or migration.created_at
        if last < limit:
            firing[f"migration:{migration.pk}"] = (
                f"data migration {migration.pk} has made no progress since {when(last)}"
            )
    return firing


def break_older_than(rule: AlertRule, now: datetime) -> Firing:
    oldest = break_age.oldest_open_days(now)
    if oldest is None or oldest <= rule.threshold:
        return {}
    aged = Break.objects.filter(
        status__in=OPEN_BREAK_STATES, first_seen__lte=now - timedelta(days=rule.threshold + 1)
    ).count()
    breaks_ = f"{points(aged)} open break{'' if aged == 1 else 's'}"
    return {"": f"{breaks_} older than {points(rule.threshold)} days, the oldest {points(oldest)} days old"}


def watcher_down(rule: AlertRule, now: datetime) -> Firing:
    """Per watched project; a project whose watcher never ran (no state row) is not watched."""
    firing = {}
    for state in WatcherState.objects.all():
        health = watcher.health(state, now)
        if health.status != "up" and (
            health.since is None or health.since <= now - timedelta(minutes=rule.threshold)
        ):
            firing[f"watcher:{state.project}"] = (
                f"the real-time watcher of {state.project} is {health.status}: {health.text}"
            )
    return firing


CHECKS: dict[str, Callable[[AlertRule, datetime], Firing]] = {
    RuleName.VIOLATIONS_FOUND: violations_found,
    RuleName.DRIFT_ABOVE: drift_above,
    RuleName.LIABILITY_MISMATCH: liability_mismatch,
    RuleName.RECONCILIATION_STALE: reconciliation_stale,
    RuleName.JOB_FAILED: job_failed,
    RuleName.WEBHOOKS_UNHEALTHY: webhooks_unhealthy,
    RuleName.FREEZE_TOO_LONG: freeze_too_long,
    RuleName.APPROVALS_WAITING: approvals_waiting,
    RuleName.MIGRATION_STALLED: migration_stalled,
    RuleName.BREAK_OLDER_THAN: break_older_than,
    RuleName.WATCHER_DOWN: watcher_down,
}

REJECTED_DEFAULT = 20

# name: (threshold, description) of the default set, on by default.
DEFAULTS: dict[str, tuple[int, str]] = {
    RuleName.VIOLATIONS_FOUND: (0, "The last completed full run has more than N violations."),
    RuleName.DRIFT_ABOVE: (1000, "The last completed full run's total absolute drift is above N points."),
    RuleName.LIABILITY_MISMATCH: (0, "Sum of wallets differs from sum of ledgers by more than N points."),
    RuleName.RECONCILIATION_STALE: (26, "No completed full run for more than N hours."),
    RuleName.JOB_FAILED: (0, "A reconciliation run or a data migration ended failed (it could not run)."),
    RuleName.WEBHOOKS_UNHEALTHY: (
        0,
        "More than N webhook deliveries quarantined or failed in the last hour, or more "
        "webhook requests rejected for their signature than the second threshold (default 20).",
    ),
    RuleName.FREEZE_TOO_LONG: (4, "The freeze has been on for more than N hours."),
    RuleName.APPROVALS_WAITING: (24, "A balance request has waited for a decision for more than N hours."),
    RuleName.MIGRATION_STALLED: (15, "A running migration has made no progress for N minutes."),
    RuleName.BREAK_OLDER_THAN: (7, "A break has been open for more than N days."),
    RuleName.WATCHER_DOWN: (5, "The real-time watcher has been down or behind for more than N minutes."),
    RuleName.COULD_NOT_EVALUATE: (0, "An evaluation could not read the data of a rule."),
    RuleName.TOO_MANY_ALERTS: (50, "One evaluation would open more than N alerts: one summary instead."),
}

# The rules whose threshold is a time, with its unit and the longest that makes
# sense (a year): a date that far back is still a date, where a larger number
# would overflow when the rule is evaluated or the dashboard reads it.
TIME_THRESHOLDS: dict[str, tuple[str, int]] = {
    RuleName.RECONCILIATION_STALE: ("hours", 366 * 24),
    RuleName.FREEZE_TOO_LONG: ("hours", 366 * 24),
    RuleName.APPROVALS_WAITING: ("hours", 366 * 24),
    RuleName.MIGRATION_STALLED: ("minutes", 366 * 24 * 60),
    RuleName.BREAK_OLDER_THAN: ("days", 366),
}

# The second number of the rules that have two.
SECOND_THRESHOLDS: dict[str, int] = {RuleName.WEBHOOKS_UNHEALTHY: REJECTED_DEFAULT}
