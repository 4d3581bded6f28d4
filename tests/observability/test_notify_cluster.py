"""Item 7 of issue 27: notifications never occupy the workers that apply money.
An alert is sent to a webhook receiver that answers one byte a second, by the
notify cluster (Q_CLUSTER_NAME=<site>-notify); meanwhile a payment webhook
arrives and the money cluster, with a single worker, applies it at once. Real
qclusters on a file database of their own (ORM broker)."""

import os
import signal
import sqlite3
import subprocess
import sys
import uuid
from datetime import datetime

import pytest

from devtools.emulator import ROOT
from revassure.firestore import FirestoreGateway
from tests.helpers import Trickler, cluster, firestore_client, wait_for

# CI's PostgreSQL pass skips it, having run it in the defaults pass: its processes run on a
# SQLite file and the ORM broker of their own.
pytestmark = pytest.mark.same_on_every_database

ALERT = """
from django.utils import timezone
from observability import alerts
from observability.models import AlertRule
from reconciliation.models import ReconciliationRun, RunStatus
AlertRule.objects.exclude(name="violations_found").update(enabled=False)
AlertRule.objects.filter(name="violations_found").update(for_minutes=0, channels=["webhook"])
ReconciliationRun.objects.create(
    trigger="command", status=RunStatus.COMPLETED, finished_at=timezone.now(), violations_count=2
)
print(len(alerts.evaluate().opened))
"""

PAYMENT = """
import json
from backfill.intake import receive_webhook
data = {"payment_id": "pay_1", "user_id": "u1", "points": 100}
body = {"id": "evt_1", "type": "payment.succeeded", "created": "2026-11-20T10:00:00Z", "data": data}
receive_webhook(json.dumps(body).encode())
"""


def shell(env, code: str) -> str:
    return subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def query(db_path, sql: str) -> list[tuple]:
    with sqlite3.connect(db_path, timeout=20) as conn:
        return conn.execute(sql).fetchall()


def test_a_payment_is_applied_at_once_while_the_notify_cluster_is_held_by_a_slow_receiver(
    tmp_path, firestore_emulator
):
    site = f"notify-{uuid.uuid4().hex[:8]}"
    db_path = tmp_path / "cluster.sqlite3"
    receiver = Trickler()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env.update(
        DATABASE_URL=f"sqlite:///{db_path}",
        GOOGLE_CLOUD_PROJECT=f"notify-{uuid.uuid4().hex[:10]}",
        FIRESTORE_EMULATOR_HOST=firestore_emulator,
        Q_CLUSTER_NAME=site,
        Q_WORKERS="1",  # one worker: a notification on it would keep the payment waiting
        ALERT_WEBHOOK_URL=f"http://127.0.0.1:{receiver.port}/hooks/alerts",
        OUTBOUND_DEADLINE_SECONDS="300",  # the send is still trickling when the test ends
    )
    FirestoreGateway(env["GOOGLE_CLOUD_PROJECT"]).write_wallets([("u1", 0, {})])
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True
    )
    assert shell(env, ALERT).split()[-1] == "1", "one alert opened"
    # No notify cluster yet: the notification waits in its own queue, not the money one.
    assert query(db_path, "SELECT key, count(*) FROM django_q_ormq GROUP BY key") == [(f"{site}-notify", 1)]

    clusters = [cluster(env), cluster({**env, "Q_CLUSTER_NAME": f"{site}-notify"})]
    try:
        # Up to three minutes: a loaded machine starts a cluster slowly.
        assert receiver.asked.wait(180), "the notify cluster never sent the alert"
        shell(env, PAYMENT)
        applied = wait_for(
            lambda: query(db_path, "SELECT status FROM backfill_providereventdelivery") == [("applied",)], 180
        )
        assert applied, query(db_path, "SELECT status, error FROM backfill_providereventdelivery")
        assert query(db_path, "SELECT count(*) FROM observability_alertnotification") == [(0,)], (
            "the alert is still being sent"
        )
    finally:
        for process in clusters:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        receiver.close()
    [(received, done)] = query(db_path, "SELECT received_at, applied_at FROM backfill_providereventdelivery")
    waited = datetime.fromisoformat(done) - datetime.fromisoformat(received)
    assert waited.total_seconds() < 5, f"the payment waited {waited}"
    wallet = firestore_client(env["GOOGLE_CLOUD_PROJECT"]).collection("wallets").document("u1")
    assert wallet.get().to_dict()["points"] == 100
