from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import Client
from django.urls import reverse

from backfill.events import sign
from backfill.intake import store_delivery
from observability.models import Alert, AlertRule, AlertState
from reconciliation.models import Break, ReconciliationRun, RunStatus
from tests.helpers import csp_refusals

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def completed(at, **fields):
    with time_machine.travel(at, tick=False):
        return ReconciliationRun.objects.create(
            trigger="schedule", status=RunStatus.COMPLETED, started_at=at, finished_at=at, **fields
        )


@pytest.fixture
def history(db):
    """A month of daily runs, the last one drifting."""
    for days_ago in range(20, 0, -1):
        completed(NOW - timedelta(days=days_ago), wallets_checked=1000, violations_count=days_ago % 4)
    run = completed(
        NOW - timedelta(hours=1),
        wallets_checked=1000,
        violations_count=3,
        drift_count=2,
        malformed_count=1,
        total_abs_drift=1500,
        total_wallet_points=10_000,
        total_ledger_sum=9_990,
    )
    Alert.objects.create(
        rule=AlertRule.objects.get(name="drift_above"), summary="run drifts", state="open", started_at=NOW
    )
    store_delivery(b"{not json", source="webhook")
    return run


def index(client, user):
    client.force_login(user)
    with time_machine.travel(NOW, tick=False):
        response = client.get(reverse("admin:index"))
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.django_db
def test_ops_read_the_health_the_last_run_the_chart_and_the_open_alerts_on_the_index(client, ops, history):
    page = index(client, ops)

    assert 'id="health-verdict">Drifting<' in page
    assert f'href="/admin/reconciliation/reconciliationrun/{history.pk}/change/"' in page
    assert "1,000 wallets" in page and "1,500 points" in page
    assert page.count("<polyline") == 2 and "21 days with a run" in page
    assert "Open alerts: 1" in page and "run drifts" in page
    assert "?active=yes" in page and "?status__exact=quarantined" in page
    assert 'id="feature-flags"' in page and 'id="running-migrations"' in page
    assert csp_refusals(page) == []


@pytest.mark.django_db
def test_the_open_alerts_count_says_acknowledged_and_silenced_ones_apart(client, ops, history):
    taken_up = [
        ("webhooks_unhealthy", AlertState.ACKNOWLEDGED),
        ("job_failed", AlertState.SILENCED),
        ("reconciliation_stale", AlertState.SILENCED),
    ]
    for name, state in taken_up:
        rule = AlertRule.objects.get(name=name)
        Alert.objects.create(rule=rule, state=state, summary=f"{name} {state}", started_at=NOW)

    page = index(client, ops)

    assert "Open alerts: 1<" in page  # taken up ones are not open
    assert "and 1 acknowledged, 2 silenced" in page


@pytest.mark.django_db
def test_each_role_sees_the_tiles_it_may_act_on(client, reviewer, outsider, history):
    page = index(client, reviewer)
    assert 'id="health"' in page and 'id="open-alerts"' in page and 'id="inbox-tile"' in page
    assert 'id="feature-flags"' not in page

    assert 'id="health"' not in index(client, outsider)


@pytest.mark.django_db
def test_the_verdict_says_stale_without_a_recent_run_and_failing_after_a_failed_one(client, ops):
    completed(NOW - timedelta(hours=30), wallets_checked=10)
    assert 'id="health-verdict">Stale<' in index(client, ops)

    completed(NOW - timedelta(minutes=5), wallets_checked=10)
    assert 'id="health-verdict">Green<' in index(client, ops)

    with time_machine.travel(NOW, tick=False):
        ReconciliationRun.objects.create(
            trigger="schedule", status=RunStatus.FAILED, finished_at=NOW, error="Unavailable: Firestore"
        )
    page = index(client, ops)
    assert 'id="health-verdict">Failing<' in page and "Unavailable: Firestore" in page


@pytest.mark.django_db
def test_open_breaks_by_age_and_refused_webhooks_are_on_the_index_for_those_who_see_them(
    client, reviewer, outsider, history
):
    for uid, days in (("w1", 0), ("w2", 10), ("w3", 12), ("w4", 40)):
        Break.objects.create(
            uid=uid,
            kind="drift",
            wallet_points=5,
            ledger_sum=0,
            delta=5,
            size=5,
            first_seen=NOW - timedelta(days=days),
            last_seen=NOW,
            first_run=history,
            last_run=history,
        )
    with time_machine.travel(NOW - timedelta(hours=2), tick=False):
        body = b'{"id": "evt_1"}'
        refused = Client().post(
            "/api/webhooks/paynow",
            data=body,
            content_type="application/json",
            HTTP_PAYNOW_SIGNATURE=sign(body, "an-old-secret", int(NOW.timestamp())),
        )
    assert refused.status_code == 401

    page = index(client, reviewer)

    assert "Open breaks: 4" in page
    breaks = "/admin/reconciliation/break/?status=not_closed&amp;age="
    assert f'{breaks}0-1">0–1 days</a>: 1' in page
    assert f'{breaks}2-7">2–7 days</a>: 0' in page
    assert f'{breaks}8-30">8–30 days</a>: 2' in page
    assert f'{breaks}over-30">over 30 days</a>: 1' in page
    assert 'href="/admin/backfill/rejectedwebhook/">Rejected for their signature</a>: 1' in page
    assert 'id="open-breaks"' not in index(client, outsider)


@pytest.mark.django_db
def test_alert_rules_on_the_index_and_the_alert_pages_read_as_names_not_codes(client, ops, history):
    rule = AlertRule.objects.get(name="break_older_than")
    Alert.objects.create(rule=rule, summary="a break waits", state="open", started_at=NOW)
    page = index(client, ops)
    assert "Drift above a threshold</a>: run drifts" in page
    assert f"Break older than {rule.threshold} days</a>: a break waits" in page
    assert "drift_above" not in page.replace("name=drift_above", "") and "N days" not in page
    alerts = client.get(reverse("admin:observability_alert_changelist")).content.decode()
    assert "Drift above a threshold" in alerts and f"Break older than {rule.threshold} days" in alerts
