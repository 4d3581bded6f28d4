"""A data migration whose whole worker cluster is killed half-way (SIGKILL) is
resumed by a new cluster from its checkpoint: every event applied exactly once,
every outcome counted exactly once, every line stored once. Runs real qclusters
on a file database of their own with the ORM broker, which hands an
unacknowledged task out again after Q_RETRY seconds. Q_TIMEOUT is 2 s, so the
migrations also go on from task to task in slices of a second."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import uuid

import pytest

from devtools.emulator import ROOT
from revassure.firestore import FirestoreGateway
from tests.helpers import ONE_PERSON_SUFFICES, cluster, firestore_client, wait_for

# CI's PostgreSQL pass skips it, having run it in the defaults pass: its processes run on a
# SQLite file and the ORM broker of their own.
pytestmark = pytest.mark.same_on_every_database

USERS = 8

MAKE_EVENTS = """
import json
events = []
for n in range({events}):
    data = {{"payment_id": f"pay_{{n}}", "user_id": f"u{{n % {users}}}", "points": n + 1}}
    created = "2026-11-20T10:00:00Z"
    body = {{"id": f"evt_{{n}}", "type": "payment.succeeded", "created": created, "data": data}}
    events.append(json.dumps(body))
"""
SETUP = {
    # Webhook deliveries stored while Firestore was away, replayed from the database.
    "stored": """
from backfill.intake import store_delivery
from backfill.run_requests import request_stored_replay
for body in events:
    store_delivery(body.encode(), source="webhook")
print(request_stored_replay().pk)
""",
    # An export uploaded in the admin, replayed from the file.
    "file": """
from django.core.files.uploadedfile import SimpleUploadedFile
from backfill.run_requests import request_file_replay
export = SimpleUploadedFile("export.jsonl", "\\n".join(events).encode())
print(request_file_replay(export, dry_run=False, actor=None).pk)
""",
}


def migration_row(db_path, migration_id):
    with sqlite3.connect(db_path, timeout=20) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute("SELECT * FROM backfill_datamigration WHERE id = ?", [migration_id]).fetchone()


@pytest.mark.parametrize("kind, events", [("stored", 240), ("file", 1200)])
def test_a_killed_worker_leaves_a_migration_that_resumes_and_applies_each_event_once(
    tmp_path, firestore_emulator, kind, events
):
    project = f"killed-{uuid.uuid4().hex[:10]}"
    db_path = tmp_path / "cluster.sqlite3"
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env.update(
        DATABASE_URL=f"sqlite:///{db_path}",
        GOOGLE_CLOUD_PROJECT=project,
        FIRESTORE_EMULATOR_HOST=firestore_emulator,
        Q_WORKERS="1",
        Q_TIMEOUT="2",
        Q_RETRY="4",
        Q_CLUSTER_NAME=f"killed-{uuid.uuid4().hex[:8]}",
        MEDIA_ROOT=str(tmp_path),
        # Replays started by one person, as this test starts them (four eyes is tested apart).
        BACKFILL_PLAN_APPROVAL_ABOVE=str(ONE_PERSON_SUFFICES),
    )
    gateway = FirestoreGateway(project)
    gateway.write_wallets((f"u{n}", 0, {}) for n in range(USERS))
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True
    )
    setup = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            MAKE_EVENTS.format(events=events, users=USERS) + SETUP[kind],
        ],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    migration_id = int(setup.stdout.strip().splitlines()[-1])

    first = cluster(env)
    try:
        # Up to three minutes: a loaded machine starts a cluster slowly.
        started = wait_for(lambda: (migration_row(db_path, migration_id)["processed"] or 0) >= 30, 180)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the whole cluster, mid-migration
        first.wait(timeout=10)
    assert started, "the first cluster never got going"
    killed_at = migration_row(db_path, migration_id)
    assert killed_at["status"] == "running" and 30 <= killed_at["processed"] < events

    second = cluster(env)
    try:
        finished = wait_for(lambda: migration_row(db_path, migration_id)["status"] == "completed", 90)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)
    row = migration_row(db_path, migration_id)
    assert finished, json.dumps(dict(row), default=str)

    assert (row["total"], row["processed"], row["applied"], row["duplicate"], row["failed"]) == (
        events,
        events,
        events,
        0,
        0,
    )
    for user in range(USERS):
        expected = sum(n + 1 for n in range(events) if n % USERS == user)
        wallet = firestore_client(gateway.project).collection("wallets").document(f"u{user}").get().to_dict()
        assert wallet["points"] == expected, f"u{user}"
    with sqlite3.connect(db_path) as conn:
        assert conn.execute(
            "SELECT status, count(*) FROM backfill_providereventdelivery GROUP BY 1"
        ).fetchall() == [("applied", events)]
    if kind == "stored":
        assert json.loads(row["parameters"])["expected"] == events
