import json
import os
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.urls import reverse
from django_q.conf import Conf
from django_q.tasks import async_task
from prometheus_client.parser import text_string_to_metric_families

from backfill.events import sign
from reconciliation import changes, services
from reconciliation.models import RunTrigger
from revassure.firestore import FirestoreError
from tests.helpers import EXPORT, put_wallets

ROOT = Path(__file__).resolve().parents[2]
SECRET = "whsec_metrics_test"


def scrape(client, token) -> dict[tuple[str, tuple], float]:
    response = client.get(reverse("metrics"), HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def reconcile(gateway):
    return services.run_inline(actor=None, trigger=RunTrigger.COMMAND, gateway=gateway)


def webhook(client, body: bytes, secret=SECRET):
    header = sign(body, secret, int(time.time()))
    return client.post(
        reverse("webhook-paynow"), data=body, content_type="application/json", HTTP_PAYNOW_SIGNATURE=header
    )


# -- access -------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_refuses_a_scrape_without_the_token_or_with_a_wrong_one(client, metrics_token):
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Basic {metrics_token}").status_code == 401
    ok = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {metrics_token}")
    assert ok.status_code == 200
    assert b"revassure_reconciliation_last_success_timestamp_seconds" in ok.content


@pytest.mark.django_db
def test_it_answers_404_while_no_token_is_configured(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 404


@pytest.mark.django_db
def test_the_scrape_is_exempt_from_the_https_redirect_like_the_probes(client, settings, metrics_token):
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/admin/login/").status_code == 301
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {metrics_token}").status_code == 200


# -- the metrics move with the work --------------------------------------------------


@pytest.mark.django_db
def test_a_run_moves_the_run_counters_and_the_gauges_of_the_last_full_run(
    client, gateway, metrics_token, counted
):
    put_wallets(gateway, {"w1": (130, [100, 20]), "w2": (5, [5]), "w3": (1, ["x"])})
    before = scrape(client, metrics_token)
    assert before[("revassure_reconciliation_last_success_timestamp_seconds", ())] == 0

    run = reconcile(gateway)

    assert counted("revassure_reconciliation_runs_total", status="completed") == 1
    assert counted("revassure_wallets_checked_total") == 3
    assert counted("revassure_reconciliation_duration_seconds_count") == 1
    assert counted("revassure_firestore_calls_total", method="run_aggregation_query", outcome="ok") >= 3
    after = scrape(client, metrics_token)
    assert after[("revassure_reconciliation_last_success_timestamp_seconds", ())] == pytest.approx(
        run.finished_at.timestamp()
    )
    assert after[("revassure_reconciliation_violations", (("kind", "drift"),))] == 1
    assert after[("revassure_reconciliation_violations", (("kind", "malformed"),))] == 1
    # w1 drifts by 10; w3's points (1) against a ledger of no integer amount drift by 1.
    assert after[("revassure_reconciliation_drift_points", ())] == run.total_abs_drift == 11
    assert after[("revassure_liability_difference_points", ())] == run.liability_difference == 11
    open_breaks = {
        labels: value for (name, labels), value in after.items() if name == "revassure_breaks_open"
    }
    # Every age bucket, zeros too; both new breaks in the youngest.
    assert open_breaks == {
        (("bucket", "0-1"),): 2,
        (("bucket", "2-7"),): 0,
        (("bucket", "8-30"),): 0,
        (("bucket", "over-30"),): 0,
    }


@pytest.mark.django_db
def test_a_failed_run_counts_as_failed(gateway, counted):
    run = services.request_run(actor=None, trigger=RunTrigger.COMMAND)
    services.fail_run(run.pk, RuntimeError("Firestore is down"))
    services.fail_run(run.pk, RuntimeError("told twice"))  # a run fails once

    assert counted("revassure_reconciliation_runs_total", status="failed") == 1


@pytest.mark.django_db
def test_a_heal_counts_each_transition_and_the_queue_gauge_follows(
    client, gateway, reviewer, approver, metrics_token, counted, django_capture_on_commit_callbacks
):
    put_wallets(gateway, {"w1": (130, [100, 20])})
    drifted = reconcile(gateway).violations.get(uid="w1")
    with django_capture_on_commit_callbacks(execute=True):
        [request] = changes.propose_heals(
            [drifted], actor=reviewer, strategy="rebalance", reason="cache bug", gateway=gateway
        )
    assert scrape(client, metrics_token)[("revassure_balance_requests_awaiting_approval", ())] == 1

    with django_capture_on_commit_callbacks(execute=True):
        changes.approve(request.pk, actor=approver, gateway=gateway)

    assert counted("revassure_balance_requests_total", kind="heal", state="proposed") == 1
    assert counted("revassure_balance_requests_total", kind="heal", state="approved") == 1
    assert counted("revassure_balance_requests_total", kind="heal", state="applied") == 1
    assert scrape(client, metrics_token)[("revassure_balance_requests_awaiting_approval", ())] == 0


@pytest.mark.django_db
def test_webhook_deliveries_are_counted_by_outcome_and_a_bad_signature_is_rejected(
    client, gateway, settings, counted, django_capture_on_commit_callbacks
):
    settings.PAYNOW_WEBHOOK_SECRETS = [SECRET]
    put_wallets(gateway, {"u1": (0, [])})
    payment = {"id": "evt_1", "type": "payment.succeeded", "created": "2026-11-20T10:00:00Z"}
    payment["data"] = {"payment_id": "pay_1", "user_id": "u1", "points": 100}
    with django_capture_on_commit_callbacks(execute=True):
        assert webhook(client, json.dumps(payment).encode()).status_code == 202
        assert webhook(client, json.dumps({**payment, "id": "evt_2"}).encode()).status_code == 202
        assert webhook(client, b"{not json").status_code == 422
        assert webhook(client, json.dumps(payment).encode(), secret="forged").status_code == 401

    assert counted("revassure_webhook_deliveries_total", outcome="applied") == 1
    assert counted("revassure_webhook_deliveries_total", outcome="duplicate") == 1
    assert counted("revassure_webhook_deliveries_total", outcome="quarantined") == 1
    assert counted("revassure_webhook_deliveries_total", outcome="rejected") == 1


@pytest.mark.django_db
@pytest.mark.usefixtures("one_person_suffices")
def test_a_replay_counts_its_events_by_outcome(
    tmp_path, gateway, counted, django_capture_on_commit_callbacks
):
    put_wallets(gateway, {"u1": (0, []), "u2": (10, [10])})
    export = tmp_path / "export.jsonl"
    export.write_text("\n".join(EXPORT) + "\n")
    with django_capture_on_commit_callbacks(execute=True):
        call_command("replay_webhooks", str(export), "--json", stdout=StringIO())

    moved = {
        o: counted("revassure_replay_events_total", outcome=o)
        for o in ("applied", "duplicate", "deferred", "quarantined", "failed")
    }
    # The refund before its payment waited (deferred), then applied with the rest.
    assert moved == {"applied": 3, "duplicate": 2, "deferred": 1, "quarantined": 3, "failed": 0}


# -- several processes ---------------------------------------------------------------

WORKER = """
import sys, time, django
django.setup()
from django.test import Client
from backfill.events import sign
client = Client()
for n in range(int(sys.argv[1])):
    body = b'{"id": "evt_%d"}' % n
    client.post("/api/webhooks/paynow", data=body, content_type="application/json",
                HTTP_PAYNOW_SIGNATURE=sign(body, "forged", int(time.time())))
"""


@pytest.mark.django_db
def test_counters_agree_when_two_worker_processes_share_the_work_and_a_third_serves_the_scrape(
    client, tmp_path, settings, metrics_token
):
    shared = tmp_path / "metrics"
    shared.mkdir()
    environment = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(shared),
        "DJANGO_SETTINGS_MODULE": "revassure.settings",
        "SECRET_KEY": "test-only",
        "PAYNOW_WEBHOOK_SECRETS": SECRET,
        "ALLOWED_HOSTS": "testserver",
        # Their own database (a refused request is recorded there), migrated once.
        "DATABASE_URL": f"sqlite:///{tmp_path / 'workers.sqlite3'}",
    }
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=environment, check=True
    )
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(n)], cwd=ROOT, env=environment) for n in (3, 4)
    ]
    assert [worker.wait(timeout=120) for worker in workers] == [0, 0]

    settings.PROMETHEUS_MULTIPROC_DIR = str(shared)
    samples = scrape(client, metrics_token)

    assert samples[("revassure_webhook_deliveries_total", (("outcome", "rejected"),))] == 7


@pytest.mark.django_db
def test_a_failed_firestore_call_is_counted_under_its_error(gateway, counted):
    with pytest.raises(FirestoreError) as failure:
        # A collection's path is no document's: the commit is refused (InvalidArgument,
        # or Unknown from the npm emulator), at once, not retried.
        gateway.write_documents([{"path": "wallets", "fields": {}}])

    error = type(failure.value.__cause__).__name__
    assert counted("revassure_firestore_calls_total", method="commit", outcome=error) == 1
    assert counted("revassure_firestore_calls_total", method="commit", outcome="ok") == 0
    assert counted("revassure_firestore_call_duration_seconds_count", method="commit") == 1


@pytest.mark.django_db
def test_a_notification_no_notify_cluster_takes_shows_in_that_clusters_queue_depth(
    client, metrics_token, settings, monkeypatch
):
    monkeypatch.setattr(Conf, "SYNC", False)  # enqueued, as the web does, with no cluster running
    async_task(
        "observability.tasks.send_notification",
        1,
        "firing",
        "webhook",
        1,
        cluster=settings.NOTIFY_CLUSTER_NAME,
    )

    samples = scrape(client, metrics_token)

    assert samples[("revassure_task_queue_depth", (("cluster", settings.NOTIFY_CLUSTER_NAME),))] == 1
    assert samples[("revassure_task_queue_depth", (("cluster", settings.Q_CLUSTER_NAME),))] == 0
