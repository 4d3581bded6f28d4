import pytest
from django.core.checks import run_checks
from django.urls import reverse
from django.utils import timezone

from observability.models import Alert, AlertRule, AlertState
from reconciliation import services
from reconciliation.models import RunTrigger
from tests.helpers import put_wallets


def errors():
    return {error.id: error.msg for error in run_checks() if error.id.startswith("revassure.E03")}


def test_wrong_observability_settings_fail_the_checks_naming_the_variable(settings):
    settings.METRICS_TOKEN = "short"
    settings.ALERT_WEBHOOK_URL = "hooks.slack.com/x"
    settings.ALERT_EMAILS = ["ops@example.com", "not an address"]

    found = errors()

    assert "METRICS_TOKEN" in found["revassure.E030"]
    assert "ALERT_WEBHOOK_URL" in found["revassure.E031"]
    assert "not an address" in found["revassure.E032"]


def test_good_observability_settings_pass_the_checks(settings):
    settings.METRICS_TOKEN = "a" * 32
    settings.ALERT_WEBHOOK_URL = "https://hooks.example.com/alerts"
    settings.ALERT_EMAILS = ["ops@example.com"]
    settings.ALERT_FROM_EMAIL = "revassure-alerts@example.com"
    assert errors() == {}


@pytest.fixture
def violations(gateway, django_capture_on_commit_callbacks):
    """A real run that finds drift; its end asks for an evaluation, which opens the alert."""
    AlertRule.objects.exclude(name="violations_found").update(enabled=False)
    put_wallets(gateway, {"w1": (130, [100, 20])})
    with django_capture_on_commit_callbacks(execute=True):
        services.run_inline(actor=None, trigger=RunTrigger.COMMAND, gateway=gateway)
    return Alert.objects.get(rule__name="violations_found")


@pytest.mark.django_db
def test_a_run_that_finds_violations_opens_the_alert_at_once_and_the_gauge_counts_it(
    violations, client, settings
):
    settings.METRICS_TOKEN = "metrics-test-token"
    assert violations.state == AlertState.OPEN
    body = client.get("/metrics", HTTP_AUTHORIZATION="Bearer metrics-test-token").content.decode()
    assert 'revassure_alerts_open{rule="violations_found"} 1.0' in body
    assert 'revassure_alerts_open{rule="drift_above"} 0.0' in body


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["ops", "reviewer", "approver"])
def test_every_role_sees_the_alerts_and_the_rules(violations, client, request, who):
    client.force_login(request.getfixturevalue(who))
    assert client.get(reverse("admin:observability_alert_changelist")).status_code == 200
    assert client.get(reverse("admin:observability_alert_change", args=[violations.pk])).status_code == 200
    assert client.get(reverse("admin:observability_alertrule_changelist")).status_code == 200


@pytest.mark.django_db
def test_ops_acknowledge_with_a_reason_and_others_cannot(violations, client, ops, reviewer):
    url = reverse("admin:observability_alert_changelist")
    action = {"action": "acknowledge", "_selected_action": [violations.pk], "reason": "on it"}
    client.force_login(reviewer)
    client.post(url, action)
    assert Alert.objects.get().state == AlertState.OPEN

    client.force_login(ops)
    client.post(url, {**action, "reason": ""})
    assert Alert.objects.get().state == AlertState.OPEN
    client.post(url, action)
    alert = Alert.objects.get()
    assert (alert.state, alert.acknowledged_by, alert.note) == (AlertState.ACKNOWLEDGED, ops, "on it")


@pytest.mark.django_db
def test_only_ops_change_a_rule_and_the_change_is_kept_with_its_reason(client, ops, reviewer):
    rule = AlertRule.objects.get(name="drift_above")
    url = reverse("admin:observability_alertrule_change", args=[rule.pk])
    form = {
        "enabled": "on",
        "threshold": "5000",
        "for_minutes": "0",
        "repeat_minutes": "240",
        "channels": ["email"],
        "reason": "too noisy during the cutover",
        "changes-TOTAL_FORMS": "0",
        "changes-INITIAL_FORMS": "0",
    }
    client.force_login(reviewer)
    assert client.post(url, form).status_code == 403

    client.force_login(ops)
    response = client.post(url, form)

    assert response.status_code == 302, response.content.decode()[:2000]
    rule.refresh_from_db()
    assert (rule.threshold, rule.channels, rule.updated_by) == (5000, ["email"], ops)
    [change] = rule.changes.all()
    assert change.changes == {"threshold": [1000, 5000], "channels": [["email", "webhook"], ["email"]]}
    assert change.reason == "too noisy during the cutover"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "value", "said"),
    [
        ("threshold", "10000000000", "at most 8,784 hours (a year), not 10,000,000,000"),
        ("threshold", "-1", "must be 0 or more"),
        ("repeat_minutes", "99999999999", "at most 527,040 minutes (a year)"),
    ],
)
def test_a_rule_time_beyond_a_year_is_refused_on_its_form_and_the_dashboard_still_shows(
    client, ops, field, value, said
):
    rule = AlertRule.objects.get(name="reconciliation_stale")
    url = reverse("admin:observability_alertrule_change", args=[rule.pk])
    form = {
        "enabled": "on",
        "threshold": "26",
        "for_minutes": "0",
        "repeat_minutes": "240",
        "reason": "typo",
        "changes-TOTAL_FORMS": "0",
        "changes-INITIAL_FORMS": "0",
        field: value,
    }
    client.force_login(ops)

    response = client.post(url, form)

    assert response.status_code == 200 and said in response.content.decode()
    rule.refresh_from_db()
    assert (rule.threshold, rule.repeat_minutes) == (26, 240) and not rule.changes.exists()
    assert client.get(reverse("admin:index")).status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("hours", ["99999999999", "721", "0", "-3", "²", "abc"])
def test_silencing_for_hours_out_of_range_is_refused_with_a_message(violations, client, ops, hours):
    client.force_login(ops)
    response = client.post(
        reverse("admin:observability_alert_changelist"),
        {"action": "silence", "_selected_action": [violations.pk], "reason": "noisy", "hours": hours},
        follow=True,
    )
    assert response.status_code == 200
    assert "Refused: silence for how many hours?" in response.content.decode()
    violations.refresh_from_db()
    assert violations.state == AlertState.OPEN and violations.silenced_until is None


@pytest.mark.django_db
def test_ops_silence_an_alert_for_the_hours_given(violations, client, ops):
    client.force_login(ops)
    response = client.post(
        reverse("admin:observability_alert_changelist"),
        {"action": "silence", "_selected_action": [violations.pk], "reason": "known, fixing", "hours": "720"},
        follow=True,
    )
    assert "1 alert(s) silenced until" in response.content.decode()
    violations.refresh_from_db()
    assert violations.state == AlertState.SILENCED and violations.note == "known, fixing"
    hours = (violations.silenced_until - timezone.now()).total_seconds() / 3600
    assert 719.9 < hours <= 720
