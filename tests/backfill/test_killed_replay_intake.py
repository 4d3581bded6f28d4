"""Item 6 of issue 27: a worker killed during a replay of stored deliveries
left the replay `running` until django-q's Q_RETRY (35 min) handed it on, and
the webhook drain, which steps aside while such a replay is at work, applied no
webhook meanwhile. Now the drain steps aside only for a replay whose lease is
alive; a dead replay's lease lapses in seconds (REPLAY_LEASE_SECONDS), live
intake goes on, and the minute's sweep resumes the replay from its checkpoint.

Real qclusters on a file database of their own (ORM broker), with production's
Q_TIMEOUT and Q_RETRY: only the lease, not a redelivery, can hand the replay on."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid

import pytest

from devtools.emulator import ROOT
from revassure.firestore import FirestoreGateway
from tests.helpers import ONE_PERSON_SUFFICES, cluster, firestore_client, wait_for

# CI's PostgreSQL pass skips it, having run it in the defaults pass: its processes run on a
# SQLite file and the ORM broker of their own.
pytestmark = pytest.mark.same_on_every_database

USERS = 8
EVENTS = 400
LEASE = 3

SETUP = """
import json
from backfill.intake import store_delivery
from backfill.run_requests import request_stored_replay
for n in range({events}):
    data = {{"payment_id": f"pay_{{n}}", "user_id": f"u{{n % {users}}}", "points": n + 1}}
    created = "2026-11-20T10:00:00Z"
    body = {{"id": f"evt_{{n}}", "type": "payment.succeeded", "created": created, "data": data}}
    store_delivery(json.dumps(body).encode(), source="webhook")
print(request_stored_replay().pk)
"""
# A delivery arriving through the webhook's own path after the kill (signature
# checks are the view's; this is what the view calls once they pass).
ARRIVAL = """
import json
from backfill.intake import receive_webhook
data = {"payment_id": "pay_live", "user_id": "u0", "points": 1000}
body = {"id": "evt_live", "type": "payment.succeeded", "created": "2026-11-20T10:00:00Z", "data": data}
print(receive_webhook(json.dumps(body).encode()).pk)
"""


def query(db_path, sql, *params):
    with sqlite3.connect(db_path, timeout=20) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute(sql, params).fetchall()


def manage(env, *args):
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    )
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def test_a_replay_whose_worker_was_killed_never_holds_up_live_webhooks_and_resumes(
    tmp_path, firestore_emulator
):
    project = f"replay-kill-{uuid.uuid4().hex[:10]}"
    db_path = tmp_path / "cluster.sqlite3"
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env.update(
        DATABASE_URL=f"sqlite:///{db_path}",
        GOOGLE_CLOUD_PROJECT=project,
        FIRESTORE_EMULATOR_HOST=firestore_emulator,
        Q_WORKERS="2",
        Q_CLUSTER_NAME=f"replay-kill-{uuid.uuid4().hex[:8]}",
        REPLAY_LEASE_SECONDS=str(LEASE),
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
        # Replays started by one person, as this test starts them (four eyes is tested apart).
        BACKFILL_PLAN_APPROVAL_ABOVE=str(ONE_PERSON_SUFFICES),
    )
    (tmp_path / "metrics").mkdir()
    gateway = FirestoreGateway(project)
    gateway.write_wallets((f"u{n}", 0, {}) for n in range(USERS))
    manage(env, "migrate", "--noinput", "-v0")
    migration_id = int(manage(env, "shell", "-c", SETUP.format(events=EVENTS, users=USERS)))

    def migration():
        return query(db_path, "SELECT * FROM backfill_datamigration WHERE id = ?", migration_id)[0]

    first = cluster(env)
    try:
        # Up to three minutes: a loaded machine starts a cluster slowly.
        started = wait_for(lambda: (migration()["processed"] or 0) >= 30, 180)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the whole cluster, mid-replay
        first.wait(timeout=10)
    assert started, "the first cluster never got going"
    killed_at = migration()
    assert killed_at["status"] == "running" and killed_at["processed"] < EVENTS

    time.sleep(LEASE + 1)  # the dead replay's lease lapses
    # The sweeps are due at the new cluster's first scheduler round (30 s in).
    query(db_path, "UPDATE django_q_schedule SET next_run = datetime('now', '-1 minute')")
    second = cluster(env)
    try:
        live_id = int(manage(env, "shell", "-c", ARRIVAL))
        sent = time.monotonic()
        applied = wait_for(
            lambda: (
                query(db_path, "SELECT status FROM backfill_providereventdelivery WHERE id = ?", live_id)[0][
                    "status"
                ]
                == "applied"
            ),
            20,
        )
        waited = time.monotonic() - sent
        finished = wait_for(lambda: migration()["status"] == "completed", 120)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)

    assert applied, "the live webhook waited on a dead replay"
    assert waited < 20
    assert finished, json.dumps(dict(migration()), default=str)
    row = migration()
    assert row["failed"] == 0 and row["processed"] >= killed_at["processed"]
    statuses = query(db_path, "SELECT status, count(*) AS n FROM backfill_providereventdelivery GROUP BY 1")
    assert [(s["status"], s["n"]) for s in statuses] == [("applied", EVENTS + 1)]
    for user in range(USERS):  # every payment credited exactly once, by the replay or the drain
        expected = sum(n + 1 for n in range(EVENTS) if n % USERS == user) + (1000 if user == 0 else 0)
        wallet = firestore_client(gateway.project).collection("wallets").document(f"u{user}").get().to_dict()
        assert wallet["points"] == expected, f"u{user}"
