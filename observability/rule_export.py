"""The alert rules for a system outside the app: a Prometheus rule file, or
Cloud Monitoring alert policies with PromQL conditions (Managed Service for
Prometheus). What `python manage.py export_alert_rules` writes.

Two kinds of rule, each over the series `/metrics` exposes (names exactly as
revassure/metrics.py and observability/collector.py expose them):

- the app's own rules (observability/rules.py), with the numbers the database
  holds (threshold, second threshold, hold time; a disabled rule is left out),
  or the shipped defaults: evaluated outside, they still fire when the workers
  that evaluate them in the app are down;
- the rules only an outside system can evaluate: `/metrics` not answering,
  no completed full reconciliation for a day, the watcher's last event too
  old, the webhook queue and the task queue growing.

Where a rule reads data that is not a metric, its PromQL says the nearest true
thing, and its description says how it differs (docs/observability.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from observability.models import AlertRule, RuleName
from observability.rule_formats import duration, seconds_literal
from observability.rules import DEFAULTS, SECOND_THRESHOLDS
from reconciliation import break_age
from revassure.metrics import PREFIX

CRITICAL, WARNING = "critical", "warning"


@dataclass(frozen=True)
class Options:
    job: str = "revassure"  # the scrape job's name: `up{job=...}`
    group: str = "revassure"  # the rule group (Cloud Monitoring: the policies' name prefix)
    interval: float = 60.0  # seconds between evaluations
    watcher_silence_minutes: float = 60.0  # no write seen by the watcher for this long: alert
    # Every duration (holds, ages, windows) multiplied by this: short rules for tests and demos.
    time_scale: float = 1.0


@dataclass(frozen=True)
class Setting:
    """One app rule's numbers, as the database (or the defaults) hold them."""

    threshold: int
    second_threshold: int | None = None
    for_minutes: int = 0
    enabled: bool = True


@dataclass(frozen=True)
class ExportedRule:
    alert: str
    expr: str
    hold: float  # seconds the expression must hold before the alert fires (Prometheus `for`)
    severity: str
    title: str  # plain text: the alert in one line
    description: str
    now: str = ""  # Prometheus only: the value now, as a template ("{{ $value }} ...")
    app_rule: str = ""  # the app's rule it mirrors; "" for a rule only an outside system evaluates

    @property
    def labels(self) -> dict[str, str]:
        labels = {"severity": self.severity, "origin": "app" if self.app_rule else "outside"}
        if self.app_rule:
            labels["app_rule"] = self.app_rule
        return labels


def settings_from_database() -> dict[str, Setting]:
    """{rule name: Setting}: the rows' numbers; a rule without a row has its defaults."""
    found = dict(default_settings())
    for rule in AlertRule.objects.all():
        found[rule.name] = Setting(rule.threshold, rule.second_threshold, rule.for_minutes, rule.enabled)
    return found


def default_settings() -> dict[str, Setting]:
    return {
        str(name): Setting(threshold, SECOND_THRESHOLDS.get(name))
        for name, (threshold, _description) in DEFAULTS.items()
    }


# -- the rules ------------------------------------------------------------------------


def exported_rules(settings: dict[str, Setting], options: Options) -> list[ExportedRule]:
    """The app's enabled rules, then the outside ones, in a stable order."""
    scale = options.time_scale
    rules = []
    for name, build in APP_RULES.items():
        setting = settings.get(name)
        if setting is not None and setting.enabled:
            rules.append(build(setting, scale))
    return rules + outside_rules(options)


def _app(name: str, setting: Setting, *, alert: str, expr: str, hold: float, severity=WARNING, **text):
    """One of the app's rules: its description (N its threshold), and how the
    outside version differs, when it does."""
    description = text.pop("description", DEFAULTS[name][1].replace(" N ", f" {setting.threshold} "))
    note = text.pop("note", "")
    return ExportedRule(
        alert=alert,
        expr=expr,
        hold=hold,
        severity=severity,
        description=f"{description} {note}".strip(),
        app_rule=str(name),
        **text,
    )


def _held(setting: Setting, scale: float) -> float:
    return setting.for_minutes * 60 * scale


def violations_found(setting: Setting, scale: float) -> ExportedRule:
    return _app(
        RuleName.VIOLATIONS_FOUND,
        setting,
        alert="RevassureViolationsFound",
        expr=f"sum without (kind) ({PREFIX}_reconciliation_violations) > {setting.threshold}",
        hold=_held(setting, scale),
        title=f"The last full reconciliation run found more than {setting.threshold} violations",
        now="{{ $value }} violations (drift and malformed).",
    )


def drift_above(setting: Setting, scale: float) -> ExportedRule:
    return _app(
        RuleName.DRIFT_ABOVE,
        setting,
        alert="RevassureDriftAbove",
        expr=f"{PREFIX}_reconciliation_drift_points > {setting.threshold}",
        hold=_held(setting, scale),
        title=f"The last full run's total drift is above {setting.threshold} points",
        now="{{ $value }} points.",
    )


def liability_mismatch(setting: Setting, scale: float) -> ExportedRule:
    return _app(
        RuleName.LIABILITY_MISMATCH,
        setting,
        alert="RevassureLiabilityMismatch",
        expr=f"abs({PREFIX}_liability_difference_points) > {setting.threshold}",
        hold=_held(setting, scale),
        severity=CRITICAL,
        title=f"Wallets and ledgers differ by more than {setting.threshold} points",
        now="{{ $value }} points apart.",
    )


def reconciliation_stale(setting: Setting, scale: float) -> ExportedRule:
    age = setting.threshold * 3600 * scale
    return _app(
        RuleName.RECONCILIATION_STALE,
        setting,
        alert="RevassureReconciliationStale",
        expr=f"time() - {PREFIX}_reconciliation_last_success_timestamp_seconds > {seconds_literal(age)}",
        hold=_held(setting, scale),
        title=f"No completed full reconciliation run for more than {setting.threshold} h",
        now="The last one finished {{ $value | humanizeDuration }} ago.",
    )


def job_failed(setting: Setting, scale: float) -> ExportedRule:
    window = duration(3600 * scale)
    return _app(
        RuleName.JOB_FAILED,
        setting,
        alert="RevassureJobFailed",
        expr=(
            f'sum without (status) (increase({PREFIX}_reconciliation_runs_total{{status="failed"}}'
            f"[{window}])) > 0"
        ),
        hold=_held(setting, scale),
        severity=CRITICAL,
        title="A reconciliation run failed in the last hour",
        note="Outside: a run that failed in the last hour (the app: the last finished run failed); "
        'a failed data migration shows as revassure_alerts_open{rule="job_failed"}.',
    )


def webhooks_unhealthy(setting: Setting, scale: float) -> ExportedRule:
    window = duration(3600 * scale)
    second = setting.second_threshold if setting.second_threshold is not None else 20
    counted = f"{PREFIX}_webhook_deliveries_total"
    return _app(
        RuleName.WEBHOOKS_UNHEALTHY,
        setting,
        alert="RevassureWebhooksUnhealthy",
        expr=(
            f'sum without (outcome) (increase({counted}{{outcome=~"quarantined|failed"}}[{window}])) '
            f"> {setting.threshold} or "
            f'sum without (outcome) (increase({counted}{{outcome="rejected"}}[{window}])) > {second}'
        ),
        hold=_held(setting, scale),
        title="Webhook deliveries failing, or refused for their signature, in the last hour",
        description=(
            f"More than {setting.threshold} webhook deliveries quarantined or failed in the last hour, "
            f"or more than {second} webhook requests refused for their signature."
        ),
    )


def freeze_too_long(setting: Setting, scale: float) -> ExportedRule:
    return _app(
        RuleName.FREEZE_TOO_LONG,
        setting,
        alert="RevassureFreezeTooLong",
        expr=f"{PREFIX}_freeze_active > 0",
        hold=setting.threshold * 3600 * scale + _held(setting, scale),
        title=f"Balance changes have been frozen for more than {setting.threshold} h",
    )


def approvals_waiting(setting: Setting, scale: float) -> ExportedRule:
    return _app(
        RuleName.APPROVALS_WAITING,
        setting,
        alert="RevassureApprovalsWaiting",
        expr=f"{PREFIX}_balance_requests_awaiting_approval > 0",
        hold=setting.threshold * 3600 * scale + _held(setting, scale),
        title=f"Balance requests have waited for a decision for more than {setting.threshold} h",
        now="{{ $value }} waiting.",
        note="Outside: some request has been waiting all that time, not necessarily the same one.",
    )


def migration_stalled(setting: Setting, scale: float) -> ExportedRule:
    window = duration(setting.threshold * 60 * scale)
    ratio = f"{PREFIX}_migration_progress_ratio"
    return _app(
        RuleName.MIGRATION_STALLED,
        setting,
        alert="RevassureMigrationStalled",
        # The offset: a migration running for the whole window, not one just started.
        expr=f"changes({ratio}[{window}]) == 0 and {ratio} offset {window} >= 0",
        hold=_held(setting, scale),
        title=f"A running data migration has made no progress for {setting.threshold} minutes",
        now="Migration {{ $labels.migration }}.",
        note="Outside: its progress ratio has not moved (the app: its heartbeat).",
    )


def break_older_than(setting: Setting, scale: float) -> ExportedRule:
    """Open breaks are exposed by age bucket: the buckets whose every age is above
    N days (never early; later than the app when N is not a bucket's edge)."""
    days = setting.threshold
    names = break_age.bucket_names()
    lows = [int(name[5:]) + 1 if name.startswith("over-") else int(name.split("-")[0]) for name in names]
    buckets = [name for name, low in zip(names, lows, strict=True) if low > days]
    first_day = min((low for low in lows if low > days), default=lows[-1])
    if not buckets:  # older than the last edge: the last bucket is all there is
        buckets = names[-1:]
    note = (
        ""
        if first_day == days + 1
        else f"Outside: from {first_day} days on, the nearest edge of the age buckets of "
        f"{PREFIX}_breaks_open (BREAK_AGE_BUCKETS)."
    )
    return _app(
        RuleName.BREAK_OLDER_THAN,
        setting,
        alert="RevassureBreakOlderThan",
        expr=f'sum without (bucket) ({PREFIX}_breaks_open{{bucket=~"{"|".join(buckets)}"}}) > 0',
        hold=_held(setting, scale),
        title=f"A break has been open for more than {days} days",
        now="{{ $value }} breaks.",
        note=note,
    )


def watcher_down(setting: Setting, scale: float) -> ExportedRule:
    return _app(
        RuleName.WATCHER_DOWN,
        setting,
        alert="RevassureWatcherDown",
        expr=f"{PREFIX}_watcher_up == 0",
        hold=setting.threshold * 60 * scale + _held(setting, scale),
        severity=CRITICAL,
        title=f"The real-time watcher has been down or behind for more than {setting.threshold} minutes",
        now="Project {{ $labels.project }}.",
    )


def _open_in_app(name: str, alert: str, title: str):
    def build(setting: Setting, scale: float) -> ExportedRule:
        return _app(
            name,
            setting,
            alert=alert,
            expr=f'{PREFIX}_alerts_open{{rule="{name}"}} > 0',
            hold=_held(setting, scale),
            title=title,
            note="Outside: while the app has this alert open (it reads what only the app can).",
        )

    return build


APP_RULES = {
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
    RuleName.COULD_NOT_EVALUATE: _open_in_app(
        RuleName.COULD_NOT_EVALUATE, "RevassureCouldNotEvaluate", "The app could not evaluate an alert rule"
    ),
    RuleName.TOO_MANY_ALERTS: _open_in_app(
        RuleName.TOO_MANY_ALERTS, "RevassureTooManyAlerts", "Too many alerts at once in the app"
    ),
}


def outside_rules(options: Options) -> list[ExportedRule]:
    scale = options.time_scale
    silence = options.watcher_silence_minutes * 60 * scale
    ten_minutes, window = 600 * scale, duration(600 * scale)
    last_event = f"{PREFIX}_watcher_last_event_timestamp_seconds"
    up = f"up{{job={json.dumps(options.job)}}}"
    return [
        ExportedRule(
            alert="RevassureMetricsDown",
            expr=f"{up} == 0 or absent({up})",
            hold=300 * scale,
            severity=CRITICAL,
            title="revassure's /metrics does not answer: the app is down, or the scrape is refused",
            description="The scrape of /metrics failed (the app down, or a wrong METRICS_TOKEN), "
            "or no target of the job is scraped at all. Every other rule is blind meanwhile.",
        ),
        ExportedRule(
            alert="RevassureNoSuccessfulReconciliation",
            expr=(
                f"time() - {PREFIX}_reconciliation_last_success_timestamp_seconds "
                f"> {seconds_literal(86400 * scale)}"
            ),
            hold=3600 * scale,
            severity=CRITICAL,
            title="No successful full reconciliation for a day",
            description="No completed full reconciliation run for a day, and an hour of grace for "
            "the daily schedule: the workers, the scheduler or Firestore may be down. "
            "Whatever the app's own rule `reconciliation_stale` says, and when the app cannot say it.",
            now="The last one finished {{ $value | humanizeDuration }} ago.",
        ),
        ExportedRule(
            alert="RevassureWatcherLastEventTooOld",
            # `> 0`: a process that never received a write shows 0, not an old write.
            expr=f"time() - {last_event} > {seconds_literal(silence)} and {last_event} > 0",
            hold=0,
            severity=WARNING,
            title=f"The real-time watcher has seen no write for {options.watcher_silence_minutes:g} minutes",
            description="The last write the watcher received was committed longer ago than the "
            "quietest time expected (export_alert_rules --watcher-silence): it stopped, or it listens "
            "but hears nothing (a stream stuck, Firestore's listener lost).",
            now="Its last event was {{ $value | humanizeDuration }} ago.",
        ),
        ExportedRule(
            alert="RevassureWebhookQueueGrowing",
            expr=(
                f"{PREFIX}_webhook_oldest_waiting_seconds > {seconds_literal(300 * scale)} "
                f"and deriv({PREFIX}_webhook_deliveries_waiting[{window}]) > 0"
            ),
            hold=ten_minutes,
            severity=WARNING,
            title="Webhook deliveries are piling up: stored, not applied",
            description="The deliveries waiting for a worker to apply them have grown for 10 minutes "
            "and the oldest has waited over 5: the workers are down or cannot keep up.",
            now="The oldest has waited {{ $value | humanizeDuration }}.",
        ),
        ExportedRule(
            alert="RevassureTaskQueueGrowing",
            expr=f"{PREFIX}_task_queue_depth > 10 and deriv({PREFIX}_task_queue_depth[{window}]) > 0",
            hold=900 * scale,
            severity=WARNING,
            title="Tasks are piling up in the queue: the workers are down or behind",
            description="The django-q2 queue of cluster {{ $labels.cluster }} has grown for 15 minutes and "
            "holds more than 10 tasks: no worker takes them (that qcluster down). On the money cluster "
            "nothing is applied and the app's own alerts are not evaluated; on the notify one "
            "(-notify) no alert or waiting notice is sent.",
            now="{{ $value }} tasks waiting.",
        ),
    ]
