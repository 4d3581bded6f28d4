"""Webhook deliveries drained by a real qcluster: the cluster killed (SIGKILL)
half-way through a burst, a second cluster applies the rest, every delivery
exactly once and every wallet exact; then a lone delivery in a quiet moment is
applied within a second or two, with no batch to wait for. A file database of
their own and the ORM broker, which hands an unacknowledged task out again
after Q_RETRY seconds; the dead drainer's lease lapses after 2 s."""

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
from tests.helpers import cluster, firestore_client, wait_for

# CI's PostgreSQL pass skips it, having run it in the defaults pass: its processes run on a
# SQLite file and the ORM broker of their own.
pytestmark = pytest.mark.same_on_every_database

USERS = 8
EVENTS = 2000

STORE = """
import json
from backfill.intake import receive_webhook
for n in range({first}, {first} + {count}):
    data = {{"payment_id": f"pay_{{n}}", "user_id": f"u{{n % 8}}", "points": n + 1}}
    created = "2026-11-20T10:00:00Z"
    body = {{"id": f"evt_{{n}}", "type": "payment.succeeded", "created": created, "data": data}}
    receive_webhook(json.dumps(body).encode())
"""


def statuses(db_path) -> dict[str, int]:
    with sqlite3.connect(db_path, timeout=20) as conn:
        return dict(conn.execute("SELECT status, count(*) FROM backfill_providereventdelivery GROUP BY 1"))


def store(env, first: int, count: int) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", STORE.format(first=first, count=count)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )


def test_a_killed_drain_loses_nothing_and_a_lone_delivery_is_applied_at_once(tmp_path, firestore_emulator):
    project = f"drain-{uuid.uuid4().hex[:10]}"
    db_path = tmp_path / "cluster.sqlite3"
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env.update(
        DATABASE_URL=f"sqlite:///{db_path}",
        GOOGLE_CLOUD_PROJECT=project,
        FIRESTORE_EMULATOR_HOST=firestore_emulator,
        Q_WORKERS="2",
        Q_TIMEOUT="2",
        Q_RETRY="4",
        Q_CLUSTER_NAME=f"drain-{uuid.uuid4().hex[:8]}",
        WEBHOOK_DRAIN_LEASE_SECONDS="2",
    )
    gateway = FirestoreGateway(project)
    gateway.write_wallets((f"u{n}", 0, {}) for n in range(USERS))
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True
    )
    store(env, 0, EVENTS)  # the burst, stored while no worker runs
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT count(*) FROM django_q_ormq").fetchone() == (1,), "one drain task"

    first = cluster(env)
    try:
        # Up to three minutes: a loaded machine starts a cluster slowly.
        started = wait_for(lambda: statuses(db_path).get("applied", 0) >= 100, 180)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the whole cluster, mid-drain
        first.wait(timeout=10)
    assert started, "the first cluster never got going"
    assert 100 <= statuses(db_path).get("applied", 0) < EVENTS, statuses(db_path)

    second = cluster(env)
    try:
        finished = wait_for(lambda: statuses(db_path) == {"applied": EVENTS}, 90)
        assert finished, statuses(db_path)
        for user in range(USERS):
            expected = sum(n + 1 for n in range(EVENTS) if n % USERS == user)
            assert (
                firestore_client(gateway.project)
                .collection("wallets")
                .document(f"u{user}")
                .get()
                .to_dict()["points"]
                == expected
            )

        store(env, EVENTS, 1)  # a lone delivery, the cluster idle
        assert wait_for(lambda: statuses(db_path) == {"applied": EVENTS + 1}, 30), statuses(db_path)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)
    with sqlite3.connect(db_path) as conn:
        received, applied = conn.execute(
            "SELECT received_at, applied_at FROM backfill_providereventdelivery WHERE event_id = ?",
            [f"evt_{EVENTS}"],
        ).fetchone()
        entries = conn.execute(
            "SELECT count(DISTINCT entry_id) FROM backfill_providereventdelivery"
        ).fetchone()
    waited = datetime.fromisoformat(applied) - datetime.fromisoformat(received)
    assert waited.total_seconds() < 2, f"a lone delivery waited {waited}"
    assert entries == (EVENTS + 1,)
    ledger_entries = sum(
        len(
            list(
                firestore_client(gateway.project)
                .collection("wallets")
                .document(f"u{n}")
                .collection("ledger")
                .stream()
            )
        )
        for n in range(USERS)
    )
    assert ledger_entries == EVENTS + 1, "each delivery credited exactly once"
