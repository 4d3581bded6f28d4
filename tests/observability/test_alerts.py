import email
import email.policy
import hashlib
import hmac
import json
import re
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.models import Schedule
from django_q.scheduler import scheduler

from backfill.events import sign
from backfill.intake import store_delivery
from backfill.models import DataMigration, MigrationKind, MigrationSource, MigrationStatus, RejectedWebhook
from observability import alerts, recovery, tasks
from observability.models import Alert, AlertNotification, AlertRule, AlertSend, AlertState, RuleName
from reconciliation.models import (
    BalanceRequest,
    Break,
    BreakResolution,
    BreakStatus,
    ReconciliationRun,
    RequestState,
    RunStatus,
)
from revassure import outbox
from revassure.models import FreezeEvent

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def only(rule_name):
    AlertRule.objects.exclude(name=rule_name).update(enabled=False)


def run(at, **fields):
    with time_machine.travel(at, tick=False):
        return ReconciliationRun.objects.create(trigger="command", finished_at=at, **fields)


def completed(at, **fields):
    return run(at, status=RunStatus.COMPLETED, **fields)


def migration(at, status=MigrationStatus.RUNNING, **fields):
    with time_machine.travel(at, tick=False):
        return DataMigration.objects.create(
            kind=MigrationKind.REPLAY_STORED, source=MigrationSource.DATABASE, status=status, **fields
        )


# Each default rule: (set its condition up at T0, clear it at a later time).


def violations_found(ops):
    completed(T0, violations_count=2, drift_count=2, total_abs_drift=7)
    return lambda at: completed(at)


def drift_above(ops):
    completed(T0, violations_count=1, drift_count=1, total_abs_drift=5000)
    return lambda at: completed(at)


def liability_mismatch(ops):
    completed(T0, total_wallet_points=1000, total_ledger_sum=900)
    return lambda at: completed(at, total_wallet_points=900, total_ledger_sum=900)


def reconciliation_stale(ops):
    completed(T0 - timedelta(hours=30))
    return lambda at: completed(at)


def job_failed(ops):
    run(T0, status=RunStatus.FAILED, error="UnavailableError: Firestore is down")
    return lambda at: completed(at)


def webhooks_unhealthy(ops):
    with time_machine.travel(T0, tick=False):
        store_delivery(b"{not json", source="webhook")
    return lambda at: None  # an hour later it is out of the window


def webhook_signatures_rejected(ops):
    """The rule's second condition: more refused signatures in the hour than its
    second threshold (20), each request a real one to the webhook."""
    client = Client()
    with time_machine.travel(T0, tick=False):
        for n in range(21):
            body = b'{"id": "evt_forged_%d"}' % n
            refused = client.post(
                "/api/webhooks/paynow",
                data=body,
                content_type="application/json",
                HTTP_PAYNOW_SIGNATURE=sign(body, "an-old-secret", int(T0.timestamp())),
            )
            assert refused.status_code == 401
    assert RejectedWebhook.objects.count() == 21
    return lambda at: None  # an hour later they are out of the window


webhook_signatures_rejected.rule = "webhooks_unhealthy"


def break_older_than(ops):
    seen = completed(T0 - timedelta(days=8), violations_count=1, drift_count=1, total_abs_drift=5)
    aged = Break.objects.create(
        uid="w1",
        kind="drift",
        wallet_points=5,
        ledger_sum=0,
        delta=5,
        size=5,
        first_seen=T0 - timedelta(days=8),
        last_seen=T0,
        first_run=seen,
        last_run=seen,
    )

    def clear(at):
        Break.objects.filter(pk=aged.pk).update(
            status=BreakStatus.CLOSED, resolution=BreakResolution.CLEARED, closed_at=at
        )

    return clear


def freeze_too_long(ops):
    with time_machine.travel(T0 - timedelta(hours=5), tick=False):
        FreezeEvent.objects.create(frozen=True, reason="cutover", actor=ops)

    def clear(at):
        with time_machine.travel(at, tick=False):
            FreezeEvent.objects.create(frozen=False, reason="cutover done", actor=ops)

    return clear


def approvals_waiting(ops):
    with time_machine.travel(T0 - timedelta(hours=25), tick=False):
        request = BalanceRequest.objects.create(
            kind="adjustment",
            uid="w1",
            amount=10,
            reason_code="goodwill",
            reason="sorry",
            expected_points=0,
            expected_ledger_sum=0,
            proposed_by=ops,
            expires_at=T0 + timedelta(days=2),
        )

    def clear(at):
        request.state = RequestState.REJECTED
        request.save(update_fields=["state"])

    return clear


def migration_stalled(ops):
    stalled = migration(T0, heartbeat_at=T0 - timedelta(minutes=20))

    def clear(at):
        DataMigration.objects.filter(pk=stalled.pk).update(heartbeat_at=at)

    return clear


DEFAULT_RULES = [
    violations_found,
    drift_above,
    liability_mismatch,
    reconciliation_stale,
    job_failed,
    webhooks_unhealthy,
    webhook_signatures_rejected,
    freeze_too_long,
    approvals_waiting,
    migration_stalled,
    break_older_than,
]


def parsed(message):
    """A received mail as the email package reads it (folded headers unfolded, parts decoded)."""
    return email.message_from_bytes(message["content"].encode(), policy=email.policy.default)


def sent(smtp, receiver):
    """(subjects of the mails, statuses of the webhook bodies) so far."""
    subjects = [parsed(m)["Subject"] for m in smtp.messages]
    return subjects, [body["status"] for body in receiver.bodies()]


@pytest.mark.django_db
@pytest.mark.parametrize("setup", DEFAULT_RULES, ids=lambda f: f.__name__)
def test_each_default_rule_fires_once_notifies_both_channels_and_resolves_once(
    setup, ops, smtp, receiver, run_evaluation
):
    name = getattr(setup, "rule", setup.__name__)
    only(name)
    rule = AlertRule.objects.get(name=name)
    clear = setup(ops)

    first = run_evaluation(T0)
    [alert] = first.opened
    assert (alert.rule.name, alert.state, first.open, first.notified) == (name, AlertState.OPEN, 1, 1)
    subjects, statuses = sent(smtp, receiver)
    assert statuses == ["firing"] and len(subjects) == 1
    assert subjects[0].startswith(f"[revassure] Alert: {rule.title}: ")
    assert smtp.messages[0]["to"] == ["ops@example.com", "oncall@example.com"]

    # Still true, within the repeat interval: nothing new, nobody told again.
    assert rule.repeat_minutes > 30
    again = run_evaluation(T0 + timedelta(minutes=30))
    assert (again.opened, again.resolved, again.open, again.notified) == ([], [], 1, 0)
    assert sent(smtp, receiver) == (subjects, ["firing"])

    cleared_at = T0 + timedelta(minutes=31)
    clear(cleared_at)
    later = T0 + timedelta(hours=1, minutes=1) if name == "webhooks_unhealthy" else cleared_at
    resolved = run_evaluation(later)
    assert [a.pk for a in resolved.resolved] == [alert.pk] and resolved.open == 0
    subjects, statuses = sent(smtp, receiver)
    assert statuses == ["firing", "resolved"] and subjects[1].startswith(
        f"[revassure] Resolved: {rule.title}: "
    )
    assert run_evaluation(later + timedelta(minutes=1)).notified == 0
    assert Alert.objects.get().state == AlertState.RESOLVED


@pytest.mark.django_db
def test_the_webhook_body_is_slack_compatible_and_signed(ops, smtp, receiver, run_evaluation):
    only("violations_found")
    violations_found(ops)
    [alert] = run_evaluation(T0).opened

    [request] = receiver.requests
    body = json.loads(request["body"])
    url = f"https://backoffice.example.com/admin/observability/alert/{alert.pk}/change/"
    assert body == {
        "text": f"[revassure] Alert: Violations found: {alert.summary} {url}",
        "status": "firing",
        "rule": "violations_found",
        "rule_title": "Violations found",
        "alert_id": alert.pk,
        "url": url,
        "summary": alert.summary,
        "started_at": T0.isoformat(),
        "resolved_at": None,
    }
    # Run ids keep counting between tests on PostgreSQL: the summary names the run, whatever its id.
    assert re.fullmatch(r"run \d+ found 2 violations \(2 drift, 0 malformed\)", alert.summary)
    timestamp, v1 = (part.split("=", 1)[1] for part in request["headers"]["X-Revassure-Signature"].split(","))
    expected = hmac.new(b"alert-secret-test", f"{timestamp}.".encode() + request["body"], hashlib.sha256)
    assert hmac.compare_digest(v1, expected.hexdigest())


@pytest.mark.django_db
def test_an_alert_repeats_after_the_interval_until_someone_acknowledges_it(
    ops, smtp, receiver, run_evaluation
):
    only("violations_found")
    violations_found(ops)
    [alert] = run_evaluation(T0).opened
    repeat = timedelta(minutes=AlertRule.objects.get(name="violations_found").repeat_minutes)

    assert run_evaluation(T0 + repeat).notified == 1
    assert sent(smtp, receiver)[1] == ["firing", "firing"]

    assert alerts.acknowledge(alert, actor=ops, reason="looking at it")
    assert run_evaluation(T0 + 2 * repeat).notified == 0
    assert run_evaluation(T0 + 5 * repeat).notified == 0
    assert sent(smtp, receiver)[1] == ["firing", "firing"]


@pytest.mark.django_db
def test_a_condition_must_hold_for_its_rule_duration_before_the_alert_opens(
    ops, smtp, receiver, run_evaluation
):
    only("violations_found")
    AlertRule.objects.filter(name="violations_found").update(for_minutes=10)
    violations_found(ops)

    assert run_evaluation(T0).opened == []
    assert run_evaluation(T0 + timedelta(minutes=9)).opened == []
    assert [a.rule.name for a in run_evaluation(T0 + timedelta(minutes=10)).opened] == ["violations_found"]
    assert sent(smtp, receiver)[1] == ["firing"]


@pytest.mark.django_db
def test_a_failing_channel_is_retried_with_backoff_and_every_attempt_is_kept(
    ops, smtp, receiver, run_evaluation, django_capture_on_commit_callbacks, settings, monkeypatch
):
    only("violations_found")
    violations_found(ops)
    receiver.statuses = [500]

    [alert] = run_evaluation(T0).opened

    assert len(smtp.messages) == 1  # the other channel sent all the same
    attempts = list(
        AlertNotification.objects.filter(alert=alert).values_list("channel", "attempt", "ok", "status_code")
    )
    assert sorted(attempts) == [("email", 1, True, None), ("webhook", 1, False, 500)]
    retry = Schedule.objects.get(func="observability.tasks.send_notification")
    assert retry.next_run == T0 + timedelta(seconds=30)
    assert retry.cluster == settings.NOTIFY_CLUSTER_NAME

    with time_machine.travel(T0 + timedelta(seconds=31), tick=False):
        scheduler(broker=get_broker())  # the money cluster's scheduler leaves it alone
        assert AlertNotification.objects.filter(channel="webhook").count() == 1
        monkeypatch.setattr(Conf, "CLUSTER_NAME", settings.NOTIFY_CLUSTER_NAME)
        scheduler(broker=get_broker())  # the notify cluster's takes it

    assert AlertNotification.objects.filter(channel="webhook").values_list("attempt", "ok", "status_code")[
        1
    ] == (2, True, 200)
    assert [body["status"] for body in receiver.bodies()] == ["firing", "firing"]


def sweep_notifications(capture):
    """The minute's sweep, and the tasks it hands out run as a notify worker would."""
    with capture(execute=True):
        return recovery.sweep()


def queued_leases_ago():
    """Longer ago than a send's lease lasts (the broker holds nothing: it was lost)."""
    return timezone.now() - timedelta(seconds=3 * outbox.lease_seconds())


@pytest.mark.django_db
def test_a_notification_whose_task_was_lost_with_a_machine_is_sent_by_the_sweep_once(
    ops, smtp, receiver, django_capture_on_commit_callbacks
):
    only("violations_found")
    violations_found(ops)
    # The evaluation commits; its send tasks went to a machine that died (never run).
    with time_machine.travel(T0, tick=False), django_capture_on_commit_callbacks(execute=False):
        [alert] = alerts.evaluate().opened
    sends = AlertSend.objects.filter(alert=alert)
    assert sorted(sends.values_list("kind", "channel", "state")) == [
        ("firing", "email", "pending"),
        ("firing", "webhook", "pending"),
    ]
    # Queued just now: its task may still be on its way.
    assert sweep_notifications(django_capture_on_commit_callbacks)["alert_sends"] == 0
    assert sent(smtp, receiver) == ([], [])

    sends.update(queued_at=queued_leases_ago())
    found = sweep_notifications(django_capture_on_commit_callbacks)

    assert found == {"alert_sends": 2, "waiting_announcements": 0}
    assert len(smtp.messages) == 1 and sent(smtp, receiver)[1] == ["firing"]
    assert sorted(sends.values_list("channel", "state", "attempts")) == [
        ("email", "sent", 1),
        ("webhook", "sent", 1),
    ]
    # The lost tasks arrive after all, and the sweep runs again: nobody is told twice.
    for send in sends:
        assert tasks.send_notification(send.pk, 1) is False
    assert sweep_notifications(django_capture_on_commit_callbacks)["alert_sends"] == 0
    assert len(smtp.messages) == 1 and len(receiver.requests) == 1
    assert AlertNotification.objects.filter(alert=alert).count() == 2


@pytest.mark.django_db
def test_a_notification_whose_worker_died_mid_attempt_is_sent_again_once_its_lease_lapses(
    ops, smtp, receiver, django_capture_on_commit_callbacks
):
    only("violations_found")
    AlertRule.objects.filter(name="violations_found").update(channels=["webhook"])
    violations_found(ops)
    with time_machine.travel(T0, tick=False), django_capture_on_commit_callbacks(execute=False):
        [alert] = alerts.evaluate().opened
    send = AlertSend.objects.get(alert=alert)
    # A worker took it and died before any answer: its attempt is held under its lease.
    assert outbox.claim(AlertSend, send.pk, 1)
    AlertSend.objects.filter(pk=send.pk).update(queued_at=queued_leases_ago())
    assert sweep_notifications(django_capture_on_commit_callbacks)["alert_sends"] == 0, "its lease lives"

    AlertSend.objects.filter(pk=send.pk).update(lease_until=queued_leases_ago())
    assert sweep_notifications(django_capture_on_commit_callbacks)["alert_sends"] == 1

    send.refresh_from_db()
    assert (send.state, send.attempts) == ("sent", 2)
    assert list(AlertNotification.objects.values_list("attempt", "ok")) == [(2, True)]
    assert sent(smtp, receiver) == ([], ["firing"])


@pytest.mark.django_db
def test_a_channel_that_cannot_connect_never_blocks_the_evaluation(ops, smtp, settings, run_evaluation):
    only("violations_found")
    settings.ALERT_WEBHOOK_URL = "http://127.0.0.1:9/nobody-listens"
    violations_found(ops)

    assert len(run_evaluation(T0).opened) == 1
    failed = AlertNotification.objects.get(channel="webhook")
    assert not failed.ok and "Error" in failed.error
    assert len(smtp.messages) == 1


@pytest.mark.django_db
def test_more_than_fifty_alerts_at_once_open_one_summary_instead(ops, smtp, receiver, run_evaluation):
    only("job_failed")
    AlertRule.objects.filter(name="too_many_alerts").update(enabled=True)
    for _ in range(51):
        migration(T0, status=MigrationStatus.FAILED, error="boom")

    result = run_evaluation(T0)

    assert [a.rule.name for a in result.opened] == ["too_many_alerts"]
    assert "51 alerts would open" in result.opened[0].summary
    assert sent(smtp, receiver)[1] == ["firing"]


@pytest.mark.django_db
def test_a_rule_that_cannot_read_its_data_opens_could_not_evaluate(ops, smtp, receiver, run_evaluation):
    only("job_failed")
    AlertRule.objects.filter(name="could_not_evaluate").update(enabled=True)
    with connection.cursor() as cursor:  # rolled back with the test
        # Renamed away rather than dropped: PostgreSQL refuses to drop a table others refer to.
        cursor.execute("ALTER TABLE backfill_datamigration RENAME TO backfill_datamigration_away")

    result = run_evaluation(T0)

    [alert] = result.opened
    assert (alert.rule.name, alert.key) == ("could_not_evaluate", "job_failed")
    assert "could not evaluate job_failed" in alert.summary
    assert sent(smtp, receiver)[1] == ["firing"]


@pytest.mark.django_db
def test_evaluate_alerts_prints_what_it_did_as_json(ops, run_evaluation, django_capture_on_commit_callbacks):
    only("violations_found")
    violations_found(ops)
    out = StringIO()
    with time_machine.travel(T0, tick=False):
        call_command("evaluate_alerts", "--json", stdout=out)

    alert = Alert.objects.get()
    assert json.loads(out.getvalue()) == {
        "opened": [
            {
                "id": alert.pk,
                "rule": "violations_found",
                "summary": alert.summary,
                "started_at": T0.isoformat(),
            }
        ],
        "resolved": [],
        "open": 1,
        "notified": 0,  # no channel is configured here
    }


@pytest.mark.django_db
def test_the_default_rules_exist_and_are_on():
    rules = {rule.name: (rule.threshold, rule.enabled) for rule in AlertRule.objects.all()}
    assert set(rules) == set(RuleName.values)
    assert rules["drift_above"] == (1000, True)
    assert rules["reconciliation_stale"] == (26, True)
    assert rules["freeze_too_long"] == (4, True)
    assert rules["approvals_waiting"] == (24, True)
    assert rules["migration_stalled"] == (15, True)
    assert rules["break_older_than"] == (7, True)
    assert AlertRule.objects.get(name="webhooks_unhealthy").second_threshold == 20


@pytest.mark.django_db
def test_a_rule_change_needs_ops_and_a_reason_and_is_kept(ops, reviewer):
    rule = AlertRule.objects.get(name="drift_above")
    with pytest.raises(PermissionError):
        alerts.update_rule(rule, actor=reviewer, reason="quieter", threshold=5000)
    with pytest.raises(ValueError):
        alerts.update_rule(rule, actor=ops, reason=" ", threshold=5000)

    alerts.update_rule(rule, actor=ops, reason="too noisy during the cutover", threshold=5000)

    [change] = rule.changes.all()
    assert (change.actor, change.reason, change.changes) == (
        ops,
        "too noisy during the cutover",
        {"threshold": [1000, 5000]},
    )
    assert AlertRule.objects.get(name="drift_above").threshold == 5000


@pytest.mark.django_db
def test_every_minute_schedule_exists():
    schedule = Schedule.objects.get(name="evaluate-alerts")
    assert (schedule.func, schedule.schedule_type, schedule.minutes) == (
        "observability.tasks.evaluate_alerts",
        Schedule.MINUTES,
        1,
    )
    sweep = Schedule.objects.get(name="sweep-notifications")
    assert (sweep.func, sweep.schedule_type, sweep.minutes) == (
        "observability.tasks.sweep_notifications",
        Schedule.MINUTES,
        1,
    )
