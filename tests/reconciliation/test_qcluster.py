"""A real qcluster (forked workers, a real broker) finishes a queued run.

The cluster runs in its own processes against a file database of its own (a
cluster cannot see pytest's test database) and the session's emulator. The
broker is the ORM by default, Redis when REDIS_URL is set (CI's second pass).
"""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid

from devtools.emulator import ROOT
from revassure.firestore import FirestoreGateway
from tests.helpers import ledger


def manage(env, *args, timeout=120):
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def run_row(db_path, run_id):
    with sqlite3.connect(db_path) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute(
            "SELECT * FROM reconciliation_reconciliationrun WHERE id = ?", [run_id]
        ).fetchone()


def test_a_real_qcluster_finishes_a_queued_run_in_chunks(tmp_path, firestore_emulator):
    project = f"qcluster-{uuid.uuid4().hex[:10]}"
    db_path = tmp_path / "cluster.sqlite3"
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{db_path}",
        "GOOGLE_CLOUD_PROJECT": project,
        "FIRESTORE_EMULATOR_HOST": firestore_emulator,
        "RECONCILE_CHUNK_SIZE": "3",
        "Q_WORKERS": "2",
        "Q_CLUSTER_NAME": f"qtest-{uuid.uuid4().hex[:8]}",
        "LOG_LEVEL": "INFO",
    }
    gateway = FirestoreGateway(project)
    gateway.write_wallets((f"user{n:02d}", n + (5 if n in (2, 7) else 0), ledger(n)) for n in range(10))
    manage(env, "migrate", "--noinput")
    queued = json.loads(manage(env, "reconcile", "--enqueue", "--json"))
    assert queued["status"] == "pending"
    run_id = queued["run_id"]

    cluster = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            row = run_row(db_path, run_id)
            if row["status"] in ("completed", "failed"):
                break
            time.sleep(0.25)
    finally:
        cluster.send_signal(signal.SIGTERM)
        _, logs = cluster.communicate(timeout=60)

    row = run_row(db_path, run_id)
    assert row["status"] == "completed", logs[-3000:]
    assert (row["chunks_total"], row["chunks_done"]) == (4, 4)
    assert (row["wallets_checked"], row["violations_count"], row["total_abs_drift"]) == (10, 2, 10)
    # The verification of the sealed report passes in that database too.
    assert "1 reports verified" in manage(env, "verify_reports")

    # Every log line of the run, from the start task and each chunk task in
    # whichever worker took it, carries the one correlation id of the run.
    lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    ours = [line for line in lines if line.get("logger", "").startswith("reconciliation")]
    assert {"reconciliation run started", "reconciliation run completed"} <= {
        line["message"] for line in ours
    }
    assert len({line["correlation_id"] for line in ours}) == 1
    assert ours[0]["correlation_id"]
