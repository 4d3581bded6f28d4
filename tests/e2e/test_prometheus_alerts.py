"""Alerting that does not depend on us: a real Prometheus (Debian's package)
scrapes the running product's /metrics with the rules `export_alert_rules`
writes, and fires when the real-time watcher stops, or when /metrics does not
answer. Durations scaled down (--time-scale), scrapes and evaluations every second."""

import json
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from datetime import UTC, datetime

from devtools.emulator import ROOT, free_port
from revassure.firestore import FirestoreGateway
from tests.helpers import prometheus_tool, stop_process_group, wait_for

SCALE = 0.005  # 5 minutes are 1.5 s
WATCHER_SILENCE = 10  # minutes: 3 s scaled


def config(site, rules, down_port: int) -> str:
    target = urllib.parse.urlsplit(site.url).netloc
    return f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [{json.dumps(str(rules))}]
scrape_configs:
  - job_name: revassure
    authorization: {{type: Bearer, credentials: {json.dumps(site.env["METRICS_TOKEN"])}}}
    static_configs: [{{targets: [{json.dumps(target)}]}}]
  # A second instance of the product that does not answer (nothing listens there).
  - job_name: revassure-second-instance
    static_configs: [{{targets: ["127.0.0.1:{down_port}"]}}]
    relabel_configs: [{{target_label: job, replacement: revassure}}]
"""


class Prometheus:
    def __init__(self, url: str):
        self.url = url

    def get(self, path: str, **params) -> dict:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=5) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, promql: str) -> list[dict]:
        return self.get("/api/v1/query", query=promql)["result"]

    def alerts(self, name: str, state: str = "firing") -> list[dict]:
        return [
            alert
            for alert in self.get("/api/v1/alerts")["alerts"]
            if alert["labels"]["alertname"] == name and alert["state"] == state
        ]


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def test_prometheus_fires_when_the_watcher_stops_and_when_metrics_do_not_answer(site, tmp_path):
    binary = prometheus_tool("prometheus")
    rules = tmp_path / "revassure-rules.yml"
    site.manage(
        "export_alert_rules",
        "--format=prometheus",
        f"--output={rules}",
        "--interval=1",
        f"--time-scale={SCALE}",
        f"--watcher-silence={WATCHER_SILENCE}",
    )
    (tmp_path / "prometheus.yml").write_text(config(site, rules, free_port()))
    url = f"http://127.0.0.1:{free_port()}"
    log = tmp_path / "prometheus.log"
    watcher_log = tmp_path / "watcher.log"
    with log.open("w") as out:
        prometheus = subprocess.Popen(
            [
                binary,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address={url.removeprefix('http://')}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    with watcher_log.open("w") as out:
        watcher = subprocess.Popen(
            [sys.executable, "manage.py", "watch_ledger"],
            cwd=ROOT,
            env=site.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    logs = lambda: f"{log.read_text()[-3000:]}\n{watcher_log.read_text()[-3000:]}\n{site.log_tails()}"  # noqa: E731
    try:
        assert wait_for(lambda: ready(url), 30), f"Prometheus never got ready:\n{logs()}"
        api = Prometheus(url)
        project = {"project": site.project}

        # The watcher listens: Prometheus sees it up, and its alert is quiet.
        up = f'revassure_watcher_up{{project="{site.project}"}} == 1'
        assert wait_for(lambda: api.query(up), 60), f"the watcher never showed up:\n{logs()}"

        # The watcher starts behind (up 0) while it catches up: a rule evaluated then left the alert
        # pending, and it clears at the next evaluation that sees it up (later than the query, on a
        # loaded machine).
        def quiet():
            return not api.alerts("RevassureWatcherDown", "pending") + api.alerts("RevassureWatcherDown")

        assert wait_for(quiet, 15), f"the watcher's alert never went quiet:\n{logs()}"

        # A payment lands; the watcher hears it (its last event, as Prometheus scrapes it).
        written = datetime.now(UTC).timestamp()
        FirestoreGateway(site.project).append_entry(
            f"prom-{uuid.uuid4().hex[:8]}", "p1", {"amount": 5, "type": "purchase"}
        )
        heard = f"revassure_watcher_last_event_timestamp_seconds > {written - 5}"
        assert wait_for(lambda: api.query(heard), 30), f"Prometheus never saw the write heard:\n{logs()}"

        # Stopped: the watcher-down alert fires within seconds (its 5 minutes scaled to 1.5 s).
        stop_process_group(watcher)
        stopped = time.monotonic()
        assert wait_for(lambda: api.alerts("RevassureWatcherDown"), 30), f"never fired:\n{logs()}"
        fired_after = time.monotonic() - stopped
        [down] = api.alerts("RevassureWatcherDown")
        assert {key: down["labels"][key] for key in ("project", "severity", "app_rule")} == {
            **project,
            "severity": "critical",
            "app_rule": "watcher_down",
        }
        assert f"Project {site.project}." in down["annotations"]["description"]
        assert fired_after < 15, f"fired {fired_after:.1f} s after the stop"

        # Its last event grows old: that alert fires once the silence (3 s scaled) has passed.
        assert wait_for(lambda: api.alerts("RevassureWatcherLastEventTooOld"), 30), logs()
        [silent] = api.alerts("RevassureWatcherLastEventTooOld")
        active_at = datetime.strptime(silent["activeAt"][:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
        assert active_at.timestamp() >= written + WATCHER_SILENCE * 60 * SCALE - 1

        # The instance that does not answer is down; the one that answers is not.
        assert wait_for(lambda: api.alerts("RevassureMetricsDown"), 30), logs()
        down_instances = {alert["labels"]["instance"] for alert in api.alerts("RevassureMetricsDown")}
        assert down_instances == {next(iter(api.query('up{job="revassure"} == 0')))["metric"]["instance"]}
        assert urllib.parse.urlsplit(site.url).netloc not in down_instances

        # Every exported rule evaluates against the real series without an error.
        groups = api.get("/api/v1/rules")["groups"]
        unhealthy = [(r["name"], r["lastError"]) for g in groups for r in g["rules"] if r["health"] != "ok"]
        assert unhealthy == []
        assert sum(len(g["rules"]) for g in groups) >= 17
    finally:
        stop_process_group(watcher)
        stop_process_group(prometheus)
