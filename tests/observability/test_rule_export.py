"""`export_alert_rules`: the app's alert rules and the outside-only ones, for
Prometheus (checked and unit-tested by promtool) and for Cloud Monitoring
(alert policies with a PromQL condition each), over metrics the app exposes.
A real Prometheus fires them in tests/e2e/test_prometheus_alerts.py."""

import json
import re
import shutil
import subprocess
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from observability import alerts
from observability.models import AlertRule, RuleName
from reconciliation.models import WatcherState
from tests.helpers import prometheus_tool

FIXTURE = Path(__file__).with_name("alert_rules_test.yml")
EXPR = re.compile(r"^\s+expr: '(.*)'$", re.MULTILINE)
ALERT = re.compile(r"^\s+- alert: (\w+)$", re.MULTILINE)
SERIES = re.compile(r"\b(?:revassure_[a-z0-9_]+|up)\b(?!\s*\()")


def export(*args) -> str:
    out, err = StringIO(), StringIO()
    call_command("export_alert_rules", *args, stdout=out, stderr=err)
    return out.getvalue()


def promtool(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [prometheus_tool("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def checked(path: Path) -> str:
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def rules_of(text: str) -> dict[str, dict]:
    """{alert: {"expr", "for"}} of an exported rule file, read as text."""
    found = {}
    for block in text.split("      - alert: ")[1:]:
        name = block.split("\n", 1)[0]
        found[name] = {
            "expr": EXPR.search(block).group(1).replace("''", "'"),
            "for": re.search(r"^\s+for: (\S+)$", block, re.MULTILINE).group(1),
        }
    return found


# -- Prometheus ---------------------------------------------------------------------


def test_the_shipped_rules_pass_promtool_and_its_unit_tests_with_input_series(tmp_path):
    (tmp_path / "revassure-rules.yml").write_text(export("--format", "prometheus", "--defaults"))
    shutil.copy(FIXTURE, tmp_path / FIXTURE.name)

    assert "SUCCESS: 18 rules found" in checked(tmp_path / "revassure-rules.yml")
    result = promtool("test", "rules", FIXTURE.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    # Every exported alert has a case that sees it fire: a new rule needs its own.
    exported = set(ALERT.findall((tmp_path / "revassure-rules.yml").read_text()))
    fixture = FIXTURE.read_text()
    tested = set(re.findall(r"alertname: (\w+)\n\s+exp_alerts:\n\s+- exp_labels", fixture))
    assert tested == exported


@pytest.mark.django_db
def test_the_rules_carry_the_numbers_the_database_holds_and_leave_a_disabled_rule_out(ops, tmp_path):
    alerts.ensure_rules()
    drift = AlertRule.objects.get(name=RuleName.DRIFT_ABOVE)
    alerts.update_rule(drift, actor=ops, reason="larger wallets now", threshold=5000, for_minutes=10)
    watcher = AlertRule.objects.get(name=RuleName.WATCHER_DOWN)
    alerts.update_rule(watcher, actor=ops, reason="page sooner", threshold=2)
    freeze = AlertRule.objects.get(name=RuleName.FREEZE_TOO_LONG)
    alerts.update_rule(freeze, actor=ops, reason="cutover week: freezes are long", enabled=False)
    path = tmp_path / "rules.yml"

    export("--format", "prometheus", "--output", str(path))

    assert "SUCCESS: 17 rules found" in checked(path)
    rules = rules_of(path.read_text())
    assert rules["RevassureDriftAbove"] == {
        "expr": "revassure_reconciliation_drift_points > 5000",
        "for": "10m",
    }
    assert rules["RevassureWatcherDown"] == {"expr": "revassure_watcher_up == 0", "for": "2m"}
    assert "RevassureFreezeTooLong" not in rules
    assert "thresholds from the database's alert rules" in path.read_text()


def test_a_time_scale_shortens_every_duration_for_a_test_prometheus(tmp_path):
    path = tmp_path / "rules.yml"
    path.write_text(export("--format", "prometheus", "--defaults", "--interval", "1", "--time-scale", "0.01"))

    checked(path)
    text = path.read_text()
    assert "    interval: 1s\n" in text
    assert "not production" in text
    rules = rules_of(text)
    assert rules["RevassureWatcherDown"]["for"] == "3s"  # 5 minutes
    assert rules["RevassureMetricsDown"]["for"] == "3s"
    assert rules["RevassureReconciliationStale"]["expr"].endswith("> 936")  # 26 h
    assert "[36s]" in rules["RevassureJobFailed"]["expr"]  # the last hour


# -- Cloud Monitoring -----------------------------------------------------------------


def test_each_rule_is_a_cloud_monitoring_policy_with_one_promql_condition(tmp_path):
    prometheus = rules_of(export("--format", "prometheus", "--defaults"))
    policies = json.loads(export("--format", "cloud-monitoring", "--defaults"))

    assert [p["conditions"][0]["conditionPrometheusQueryLanguage"]["alertRule"] for p in policies] == list(
        prometheus
    )
    for policy in policies:
        [condition] = policy["conditions"]
        promql = condition["conditionPrometheusQueryLanguage"]
        alert = promql["alertRule"]
        assert set(promql) == {"query", "duration", "evaluationInterval", "labels", "ruleGroup", "alertRule"}
        assert promql["query"] == prometheus[alert]["expr"]
        assert re.fullmatch(r"\d+(\.\d+)?s", promql["duration"])
        assert promql["evaluationInterval"] == "60s"  # a multiple of 30 s
        assert promql["ruleGroup"] == "revassure"
        assert policy["displayName"] == f"revassure/{alert}"
        assert policy["combiner"] == "OR"
        assert policy["severity"] in ("CRITICAL", "WARNING")
        assert promql["labels"]["severity"] == policy["severity"].lower()
        assert policy["documentation"]["mimeType"] == "text/markdown"
        assert all(re.fullmatch(r"[a-z0-9_-]{1,63}", value) for value in policy["userLabels"].values())
    held = {p["conditions"][0]["conditionPrometheusQueryLanguage"]["alertRule"]: p for p in policies}
    assert (
        held["RevassureWatcherDown"]["conditions"][0]["conditionPrometheusQueryLanguage"]["duration"]
        == "300s"
    )

    # The queries are PromQL promtool accepts, held as long as the policies say.
    as_rules = ["groups:", "  - name: from-cloud-monitoring", "    rules:"]
    for policy in policies:
        promql = policy["conditions"][0]["conditionPrometheusQueryLanguage"]
        as_rules += [
            f"      - alert: {promql['alertRule']}",
            f"        expr: {json.dumps(promql['query'])}",
            f"        for: {promql['duration'].removesuffix('s').split('.')[0]}s",
        ]
    (tmp_path / "cloud.yml").write_text("\n".join(as_rules) + "\n")
    assert f"SUCCESS: {len(policies)} rules found" in checked(tmp_path / "cloud.yml")


def test_into_a_directory_one_policy_file_each_as_gcloud_reads_them(tmp_path):
    out, err = StringIO(), StringIO()
    folder = tmp_path / "policies"
    call_command(
        "export_alert_rules",
        "--format=cloud-monitoring",
        "--defaults",
        f"--output={folder}/",  # made when it is not there
        stdout=out,
        stderr=err,
    )

    assert len(list(folder.glob("*.json"))) == 18
    assert out.getvalue() == ""
    assert "18 rules written to" in err.getvalue()
    policy = json.loads((folder / "RevassureWatcherDown.json").read_text())
    assert policy["displayName"] == "revassure/RevassureWatcherDown"
    assert len(policy["conditions"]) == 1


# -- the names are the app's ------------------------------------------------------------


@pytest.mark.django_db
def test_every_series_an_exported_rule_reads_is_one_the_app_exposes(client, metrics_token):
    # A watcher has run, as in production: its per-project gauges have a series.
    WatcherState.objects.create(project="revassure-prod", heartbeat_at=timezone.now(), connected=True)
    response = client.get(reverse("metrics"), HTTP_AUTHORIZATION=f"Bearer {metrics_token}")
    assert response.status_code == 200
    exposed = set()
    for family in text_string_to_metric_families(response.content.decode()):
        exposed.add(family.name)  # a gauge with no series now (no migration running) still counts
        exposed |= {sample.name for sample in family.samples}

    queries = list(rules_of(export("--format", "prometheus", "--defaults")).values())
    read = {name for rule in queries for name in SERIES.findall(rule["expr"])}
    for policy in json.loads(export("--format", "cloud-monitoring", "--defaults")):
        read |= set(SERIES.findall(policy["conditions"][0]["conditionPrometheusQueryLanguage"]["query"]))

    assert len(read) >= 15 and "revassure_watcher_up" in read
    assert read - exposed == {"up"}  # Prometheus's own: 1 when the scrape answered


# -- refusals ---------------------------------------------------------------------------


def test_bad_options_are_refused_with_the_reason_and_a_rule_file_is_replaced_whole(tmp_path):
    with pytest.raises(CommandError, match="invalid choice: 'nagios'"):
        export("--format", "nagios")
    with pytest.raises(CommandError, match="must be above 0"):
        export("--format", "prometheus", "--defaults", "--time-scale", "0")
    with pytest.raises(CommandError, match="no folder .*missing"):
        export("--format", "prometheus", "--defaults", "--output", str(tmp_path / "missing" / "rules.yml"))
    with pytest.raises(CommandError, match="is a directory: name the rule file"):
        export("--format", "prometheus", "--defaults", "--output", str(tmp_path))

    replaced = tmp_path / "rules.yml"
    replaced.write_text("# the rules loaded before\n")
    export("--format", "prometheus", "--defaults", "--output", str(replaced))
    assert replaced.read_text().startswith("# revassure's alert rules for Prometheus")
    assert [p.name for p in tmp_path.iterdir()] == ["rules.yml"]  # no temporary file left
