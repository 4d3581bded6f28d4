"""The real-time watcher's state where ops look: /metrics, the dashboard, and an
alert when it has been down or behind for longer than the rule allows."""

import datetime as dt
import threading

import pytest
from django.urls import reverse
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from observability import alerts
from observability.models import Alert, AlertRule, RuleName
from reconciliation.models import WatcherState
from reconciliation.watcher import Watcher
from tests.helpers import firestore_client, put_wallets

pytestmark = pytest.mark.django_db


def scrape(client, token) -> dict[tuple[str, tuple], float]:
    response = client.get(reverse("metrics"), HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200, response.content
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def watch_one_drift(gateway):
    """The watcher, here, until it recorded one drift written from another thread."""
    stop = threading.Event()
    watcher = Watcher(gateway=gateway, on_drift=lambda drift: stop.set(), debounce=0.1)

    def writer():
        if watcher.listening.wait(30):
            gateway.append_entry("u1", "p1", {"amount": 5, "type": "purchase"})  # paired: checked, clean
            firestore_client(gateway.project).collection("wallets").document("u2").update({"points": 99})
        stop.wait(30)
        stop.set()

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    watcher.run(stop)
    thread.join()


def test_metrics_show_the_checks_the_drifts_the_latency_and_whether_the_watcher_is_up(
    client, gateway, metrics_token, counted
):
    put_wallets(gateway, {"u1": (10, [10]), "u2": (5, [5])})

    watch_one_drift(gateway)

    assert counted("revassure_watcher_checks_total") == 2
    assert counted("revassure_watcher_drifts_total") == 1
    assert counted("revassure_watcher_detection_latency_seconds_count") == 2
    samples = scrape(client, metrics_token)
    assert samples[("revassure_watcher_last_event_timestamp_seconds", ())] > 0
    project = (("project", gateway.project),)
    assert samples[("revassure_watcher_up", project)] == 0  # stopped: down
    heartbeat = samples[("revassure_watcher_heartbeat_timestamp_seconds", project)]
    assert abs(heartbeat - timezone.now().timestamp()) < 60


def watcher_alerts(found):
    """Only the watcher rule's (other rules fire on an empty database too)."""
    return [alert for alert in found if alert.rule.name == RuleName.WATCHER_DOWN]


def state(**fields):
    now = timezone.now()
    values = {"heartbeat_at": now, "connected": True, "resume_at": now, **fields}
    return WatcherState.objects.create(project="p", **values)


def test_the_watcher_rule_fires_once_it_has_been_down_longer_than_its_minutes_and_resolves():
    rule = AlertRule.objects.get(name=RuleName.WATCHER_DOWN)
    assert rule.enabled and rule.threshold == 5
    now = timezone.now()
    watcher = state(heartbeat_at=now - dt.timedelta(minutes=3))

    assert watcher_alerts(alerts.evaluate(now).opened) == []  # down, but for 3 minutes only

    opened = watcher_alerts(alerts.evaluate(now + dt.timedelta(minutes=3)).opened)
    assert [(a.rule.name, a.key) for a in opened] == [(RuleName.WATCHER_DOWN, "watcher:p")]
    assert "no heartbeat since" in opened[0].summary

    watcher.heartbeat_at = now + dt.timedelta(minutes=3)
    watcher.save()
    resolved = watcher_alerts(alerts.evaluate(now + dt.timedelta(minutes=3, seconds=5)).resolved)
    assert [a.pk for a in resolved] == [opened[0].pk]


def test_a_watcher_just_started_is_no_alert_until_its_minutes_have_passed_since_its_start():
    # make demo starts the workers and the watcher together: the first evaluation
    # came before the watcher's first heartbeat and alerted "never run" at once.
    now = timezone.now()
    state(heartbeat_at=None, started_at=now, connected=False)

    assert watcher_alerts(alerts.evaluate(now + dt.timedelta(seconds=2)).opened) == []
    opened = watcher_alerts(alerts.evaluate(now + dt.timedelta(minutes=6)).opened)
    assert [a.key for a in opened] == ["watcher:p"] and "no heartbeat yet" in opened[0].summary


def test_a_watcher_behind_or_not_listening_fires_too(settings):
    settings.WATCHER_MAX_LAG_SECONDS = 60
    now = timezone.now()
    state(oldest_pending_at=now - dt.timedelta(minutes=7), pending=12)
    opened = watcher_alerts(alerts.evaluate(now).opened)
    assert [a.summary for a in opened] == [
        "the real-time watcher of p is behind: 12 written wallets waiting for their check, the oldest "
        f"written at {(now - dt.timedelta(minutes=7)).isoformat().replace('+00:00', 'Z')}"
    ]
    WatcherState.objects.create(project="q", heartbeat_at=now, connected=False, disconnected_at=now)
    assert watcher_alerts(alerts.evaluate(now).opened) == []  # not listening for a moment: not yet
    assert [a.key for a in watcher_alerts(alerts.evaluate(now + dt.timedelta(minutes=6)).opened)] == [
        "watcher:q"
    ]
    assert Alert.objects.filter(rule__name=RuleName.WATCHER_DOWN).count() == 2


def test_the_dashboard_says_whether_the_watcher_is_up_down_or_has_never_run(client, ops, settings):
    settings.GOOGLE_CLOUD_PROJECT = "p"
    client.force_login(ops)
    page = client.get("/admin/").content.decode()
    assert 'id="watcher-status">Down<' in page and "has never run" in page

    state()
    page = client.get("/admin/").content.decode()
    assert 'id="watcher-status">Up<' in page

    WatcherState.objects.filter(project="p").update(heartbeat_at=timezone.now() - dt.timedelta(minutes=2))
    page = client.get("/admin/").content.decode()
    assert 'id="watcher-status">Down<' in page and "no heartbeat since" in page
