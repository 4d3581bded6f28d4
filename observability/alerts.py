"""Alerts: evaluate the rules, open once, notify once, repeat after the interval,
resolve once; acknowledge, silence; change a rule with a reason.

Edge-triggered: an alert is a row per episode of a rule's condition (per key).
Notifications are sent by a worker of the notify cluster (settings.NOTIFY_CLUSTER_NAME,
never one that applies money; observability.tasks.send_notification, enqueued by
dotted path after the commit), retried with backoff on that cluster too, every
attempt kept as an AlertNotification. Each send (alert, kind, channel) is an
AlertSend row written with the decision (an outbox, revassure/outbox.py): a
send whose task or worker was lost is sent by the minute's sweep
(observability/recovery.py), and each attempt is taken by one worker only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.db import transaction
from django.utils import timezone
from django_q.models import Schedule
from django_q.tasks import async_task

from observability import channels
from observability.models import (
    ACTIVE,
    Alert,
    AlertNotification,
    AlertRule,
    AlertRuleChange,
    AlertSend,
    AlertState,
    NotificationKind,
    RuleName,
)
from observability.rules import CHECKS, DEFAULTS, SECOND_THRESHOLDS, TIME_THRESHOLDS
from revassure import dbclock, outbox
from revassure.formatting import when
from revassure.logs import on_commit
from revassure.refusals import may, require

log = logging.getLogger(__name__)

SEND_TASK = "observability.tasks.send_notification"
MAX_ATTEMPTS = 5
BACKOFF_SECONDS = (30, 120, 600, 1800)  # before attempts 2, 3, 4, 5
EDITABLE = ("threshold", "second_threshold", "for_minutes", "repeat_minutes", "channels", "enabled")


@dataclass
class Evaluation:
    opened: list[Alert] = field(default_factory=list)
    resolved: list[Alert] = field(default_factory=list)
    open: int = 0
    notified: int = 0

    def as_json(self) -> dict:
        return {
            "opened": [alert.as_json() for alert in self.opened],
            "resolved": [alert.as_json() for alert in self.resolved],
            "open": self.open,
            "notified": self.notified,
        }


def ensure_rules() -> None:
    for name, (threshold, description) in DEFAULTS.items():
        AlertRule.objects.get_or_create(
            name=name,
            defaults={
                "threshold": threshold,
                "second_threshold": SECOND_THRESHOLDS.get(name),
                "description": description,
                "channels": ["email", "webhook"],
            },
        )


def evaluate(now: datetime | None = None) -> Evaluation:
    """Evaluate every enabled rule once. Never raises for a rule that cannot read
    its data: that opens a `could_not_evaluate` alert for it instead."""
    now = now or timezone.now()
    result = Evaluation()
    rules = {rule.name: rule for rule in AlertRule.objects.all()}
    firing: dict[str, dict[str, str]] = {}
    failures: dict[str, str] = {}
    for name, check in CHECKS.items():
        rule = rules.get(name)
        if rule is None or not rule.enabled:
            continue
        try:
            # A savepoint: on PostgreSQL a failed query would end the whole transaction.
            with transaction.atomic():
                firing[name] = check(rule, now)
        except Exception as exc:
            log.exception("alert rule could not be evaluated", extra={"rule": name})
            failures[name] = f"{type(exc).__name__}: {exc}"
    unreadable = rules.get(RuleName.COULD_NOT_EVALUATE)
    if unreadable is not None and unreadable.enabled:
        firing[RuleName.COULD_NOT_EVALUATE] = {
            name: f"could not evaluate {name}: {error[:300]}" for name, error in failures.items()
        }
    with transaction.atomic():
        due = []
        for name, conditions in firing.items():
            due += _advance(rules[name], conditions, now, result)
        summary_rule = rules.get(RuleName.TOO_MANY_ALERTS)
        limit = summary_rule.threshold if summary_rule else 50
        too_many = {}
        if summary_rule is not None and summary_rule.enabled:
            if len(due) > limit:
                too_many = {"": f"{len(due)} alerts would open at once; they wait while this one is open"}
            summary_due = _advance(summary_rule, too_many, now, result)
            if summary_due or too_many:
                due = summary_due
        for alert in due:
            _open(alert, now, result)
        result.open = Alert.objects.filter(state__in=ACTIVE).count()
    return result


def _advance(rule: AlertRule, conditions: dict[str, str], now: datetime, result: Evaluation) -> list[Alert]:
    """Move this rule's alerts on; return the pending ones due to open."""
    current = {
        alert.key: alert for alert in Alert.objects.filter(rule=rule).exclude(state=AlertState.RESOLVED)
    }
    due = []
    for key, summary in conditions.items():
        alert = current.get(key)
        if alert is None:
            alert = Alert.objects.create(
                rule=rule, key=key, summary=summary, state=AlertState.PENDING, started_at=now
            )
        elif alert.summary != summary:
            alert.summary = summary
            alert.save(update_fields=["summary"])
        if alert.state == AlertState.PENDING:
            if alert.started_at + timedelta(minutes=rule.for_minutes) <= now:
                due.append(alert)
            continue
        if alert.state == AlertState.SILENCED and alert.silenced_until and alert.silenced_until <= now:
            alert.state, alert.silenced_until = AlertState.OPEN, None
            alert.save(update_fields=["state", "silenced_until"])
        if alert.state == AlertState.OPEN:
            assert alert.last_notified_at is not None  # opened: notified then
            if alert.last_notified_at + timedelta(minutes=rule.repeat_minutes) <= now:
                _notify(alert, NotificationKind.REPEAT, now, result)
    for key, alert in current.items():
        if key in conditions:
            continue
        if alert.state == AlertState.PENDING:
            alert.delete()  # it never held long enough to open: nobody was told
            continue
        silenced = alert.state == AlertState.SILENCED and alert.silenced_until and alert.silenced_until > now
        alert.state, alert.resolved_at = AlertState.RESOLVED, now
        alert.save(update_fields=["state", "resolved_at"])
        result.resolved.append(alert)
        if not silenced:
            _notify(alert, NotificationKind.RESOLVED, now, result)
    return due


def _open(alert: Alert, now: datetime, result: Evaluation) -> None:
    alert.state, alert.opened_at = AlertState.OPEN, now
    alert.save(update_fields=["state", "opened_at"])
    result.opened.append(alert)
    _notify(alert, NotificationKind.FIRING, now, result)


def _notify(alert: Alert, kind: str, now: datetime, result: Evaluation) -> None:
    alert.last_notified_at = now
    alert.save(update_fields=["last_notified_at"])
    wanted = [name for name in alert.rule.channels if name in channels.configured()]
    for channel in wanted:
        # In the evaluation's transaction: the decision and the send are stored together.
        queued = AlertSend.objects.create(alert=alert, kind=kind, channel=channel, queued_at=dbclock.now())
        on_commit(lambda send_id=queued.pk: enqueue(send_id, 1))
    result.notified += 1 if wanted else 0


def enqueue(send_id: int, attempt: int) -> None:
    async_task(SEND_TASK, send_id, attempt, cluster=settings.NOTIFY_CLUSTER_NAME)


def send(send_id: int, attempt: int) -> AlertNotification | None:
    """One attempt of a send, by the worker that takes it (None when another
    worker has it, or it is done: a second task for the same attempt changes
    nothing). A failure schedules the next attempt with backoff, up to MAX_ATTEMPTS."""
    if not outbox.claim(AlertSend, send_id, attempt):
        log.info("alert notification taken already", extra={"send_id": send_id, "attempt": attempt})
        return None
    queued = AlertSend.objects.select_related("alert__rule").get(pk=send_id)
    alert, kind, channel = queued.alert, queued.kind, queued.channel
    ok, status_code, error = channels.SENDERS[channel](alert, kind)
    backoff = BACKOFF_SECONDS[attempt - 1] if not ok and attempt < MAX_ATTEMPTS else None
    with transaction.atomic():
        notification = AlertNotification.objects.create(
            alert=alert,
            kind=kind,
            channel=channel,
            attempt=attempt,
            ok=ok,
            status_code=status_code,
            error=error,
        )
        if backoff is not None:
            Schedule.objects.create(
                name=f"alert-{alert.pk}-{kind}-{channel}-attempt-{attempt + 1}",
                func=SEND_TASK,
                args=repr((send_id, attempt + 1)),
                schedule_type=Schedule.ONCE,
                repeats=1,
                next_run=timezone.now() + timedelta(seconds=backoff),
                # Only the notify cluster's scheduler takes it, and enqueues it on that cluster.
                cluster=settings.NOTIFY_CLUSTER_NAME,
            )
        outbox.finish(AlertSend, send_id, attempt, sent=ok, retry_in=backoff)
    log.info(
        "alert notification %s",
        "sent" if ok else "failed",
        extra={"alert_id": alert.pk, "channel": channel, "attempt": attempt, "error": error},
    )
    return notification


ACKNOWLEDGE_PERMISSION = "observability.acknowledge_alert"
ACKNOWLEDGEABLE = (AlertState.OPEN, AlertState.SILENCED)
SILENCEABLE = (AlertState.OPEN, AlertState.ACKNOWLEDGED)


def refusal(alert: Alert, actor: User | AnonymousUser, doing: str) -> str:
    """Why `actor` cannot `doing` ("acknowledge" or "silence") this alert now, for a
    person; "" when they can. Pages ask it before offering the form."""
    if not may(actor, ACKNOWLEDGE_PERMISSION):
        return "only ops acknowledge and silence alerts"
    allowed = ACKNOWLEDGEABLE if doing == "acknowledge" else SILENCEABLE
    if alert.state in allowed:
        return ""
    if alert.state == AlertState.RESOLVED:
        return f"it resolved at {when(alert.resolved_at)}: nothing is wrong any more"
    if alert.state == AlertState.ACKNOWLEDGED:
        return f"{alert.acknowledged_by} acknowledged it at {when(alert.acknowledged_at)}"
    if alert.state == AlertState.SILENCED:
        return f"{alert.acknowledged_by} silenced it until {when(alert.silenced_until)}"
    return f"it is {alert.get_state_display()}"


def acknowledge(alert: Alert, *, actor: User, reason: str) -> bool:
    """Stop the repeats of an open alert (it still resolves, and says so)."""
    _require(actor)
    if not reason.strip():
        raise ValueError("a reason is required")
    return bool(
        Alert.objects.filter(pk=alert.pk, state__in=ACKNOWLEDGEABLE).update(
            state=AlertState.ACKNOWLEDGED, acknowledged_by=actor, acknowledged_at=timezone.now(), note=reason
        )
    )


# A silence longer than this is a typo, or an alert that should be a rule change.
MAX_SILENCE_HOURS = 30 * 24


def silence(alert: Alert, *, actor: User, hours: int, reason: str) -> bool:
    """No notification for `hours` (not even the resolution); then it repeats again."""
    _require(actor)
    if not reason.strip():
        raise ValueError("a reason is required")
    if not 1 <= hours <= MAX_SILENCE_HOURS:
        raise ValueError(f"an alert is silenced for 1 to {MAX_SILENCE_HOURS} hours (30 days), not {hours:,}")
    until = timezone.now() + timedelta(hours=hours)
    return bool(
        Alert.objects.filter(pk=alert.pk, state__in=SILENCEABLE).update(
            state=AlertState.SILENCED, silenced_until=until, acknowledged_by=actor, note=reason
        )
    )


def _require(actor) -> None:
    require(actor, ACKNOWLEDGE_PERMISSION, "acknowledge or silence alerts")


# for_minutes and repeat_minutes: at most a year.
MAX_RULE_MINUTES = 366 * 24 * 60


def rule_value_problems(rule: AlertRule, values: dict) -> dict[str, str]:
    """{field: what is wrong} for a rule's new numbers: none below zero, and the
    times within a year, so evaluating the rule never overflows a date."""
    problems = {}
    unit, longest = TIME_THRESHOLDS.get(rule.name, (None, None))
    limits = {"threshold": longest, "for_minutes": MAX_RULE_MINUTES, "repeat_minutes": MAX_RULE_MINUTES}
    units = {"threshold": unit, "for_minutes": "minutes", "repeat_minutes": "minutes"}
    for name in ("threshold", "second_threshold", "for_minutes", "repeat_minutes"):
        value = values.get(name)
        if value is None:
            continue
        if value < 0:
            problems[name] = f"must be 0 or more, not {value:,}"
        elif limits.get(name) is not None and value > limits[name]:
            problems[name] = f"at most {limits[name]:,} {units[name]} (a year), not {value:,}"
    return problems


def update_rule(rule: AlertRule, *, actor: User, reason: str, **values: Any) -> AlertRule:
    """Change a rule's numbers, channels or switch, with a reason; one history row."""
    if not reason.strip():
        raise ValueError("a reason is required to change an alert rule")
    require(actor, "observability.change_alertrule", "change alert rules")
    unknown = set(values) - set(EDITABLE)
    if unknown:
        raise ValueError(f"not editable: {sorted(unknown)}")
    problems = rule_value_problems(rule, values)
    if problems:
        raise ValueError("; ".join(f"{name}: {problem}" for name, problem in problems.items()))
    with transaction.atomic():
        stored = AlertRule.objects.select_for_update().get(pk=rule.pk)
        changes = {
            name: [getattr(stored, name), value]
            for name, value in values.items()
            if getattr(stored, name) != value
        }
        for name, value in values.items():
            setattr(stored, name, value)
        stored.updated_by, stored.updated_at = actor, timezone.now()
        stored.save(update_fields=[*values, "updated_by", "updated_at"])
        AlertRuleChange.objects.create(rule=stored, changes=changes, reason=reason, actor=actor)
    return stored
