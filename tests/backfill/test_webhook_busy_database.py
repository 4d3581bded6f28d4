"""Item 5 of issue 27: a long transaction elsewhere (a settlement dry run on
SQLite held the one write lock for minutes) must never turn a provider's
delivery into a 500 after 20 s. The webhook waits a few seconds at most, then
answers 503 with Retry-After and keeps nothing, so the provider sends it again;
once the lock is gone the resend is stored and applied."""

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid

import pytest
from django.db import connection, connections
from django.urls import reverse

from backfill.events import sign
from backfill.models import ProviderEventDelivery
from devtools.emulator import ROOT, free_port
from revassure.firestore import FirestoreGateway
from tests.helpers import firestore_client, put_wallets, stop_process_group, wait_for

# CI's PostgreSQL pass skips it, having run it in the defaults pass: its processes run on a
# SQLite file and the ORM broker of their own.
pytestmark = pytest.mark.same_on_every_database

SECRET = "whsec_test_only_current"


def payment(n: int) -> bytes:
    data = {"payment_id": f"pay_{n}", "user_id": "u1", "points": 10}
    return json.dumps(
        {"id": f"evt_{n}", "type": "payment.succeeded", "created": "2026-11-20T10:00:00Z", "data": data}
    ).encode()


def post(client, raw: bytes):
    return client.post(
        reverse("webhook-paynow"),
        data=raw,
        content_type="application/json",
        HTTP_PAYNOW_SIGNATURE=sign(raw, SECRET, int(time.time())),
    )


class HeldLock:
    """Another connection (its own thread) holding what a long transaction holds
    on the deliveries' table: SQLite's write lock, a PostgreSQL table lock."""

    def __init__(self):
        self.taken, self.done = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._hold)

    def _hold(self):
        try:
            with connection.cursor() as cursor:
                if connection.vendor == "sqlite":
                    cursor.execute("BEGIN IMMEDIATE")
                    cursor.execute("DELETE FROM backfill_webhookdrain WHERE id = -1")
                else:
                    cursor.execute("BEGIN")
                    cursor.execute("LOCK TABLE backfill_providereventdelivery IN ACCESS EXCLUSIVE MODE")
                self.taken.set()
                self.done.wait(30)
                cursor.execute("ROLLBACK")
        finally:
            connections.close_all()

    def __enter__(self):
        self.thread.start()
        assert self.taken.wait(10), "the other connection never took the lock"
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join(30)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_delivery_that_cannot_be_stored_gets_503_with_retry_after_and_the_resend_is_stored(
    client, settings, gateway
):
    put_wallets(gateway, {"u1": (0, [])})
    settings.PAYNOW_WEBHOOK_SECRETS = [SECRET]
    settings.WEBHOOK_STORE_WAIT_SECONDS = 0.5
    settings.WEBHOOK_RETRY_AFTER_SECONDS = 7

    if connection.vendor == "postgresql":
        # An insert waits only for a table lock there; lock_timeout (a deployment's
        # choice) ends that wait with OperationalError, which must be a 503 too.
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = 500")
    try:
        with HeldLock():
            started = time.monotonic()
            refused = post(client, payment(1))
            waited = time.monotonic() - started
    finally:
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("RESET lock_timeout")

    assert refused.status_code == 503, refused.content
    assert refused["Retry-After"] == "7"
    assert "send it again" in refused.json()["error"]
    assert waited < 5, f"the provider waited {waited:.1f} s"
    assert not ProviderEventDelivery.objects.exists()

    resent = post(client, payment(1))  # the provider retries after Retry-After
    assert resent.status_code == 202, resent.content
    assert list(ProviderEventDelivery.objects.values_list("event_id", "status")) == [("evt_1", "applied")]
    assert (
        firestore_client(gateway.project).collection("wallets").document("u1").get().to_dict()["points"] == 10
    )


STATEMENT_ROWS = 40_000
HEADER = "type,payment_id,reference,user_id,points,amount,currency,status,settled_at\n"


def _db_rows(db_path, sql):
    with sqlite3.connect(db_path, timeout=20) as conn:
        return conn.execute(sql).fetchall()


def test_webhooks_sent_during_a_long_settlement_dry_run_on_sqlite_are_stored_at_once(
    tmp_path, firestore_emulator
):
    """The issue's scene on a SQLite file, with real processes: gunicorn serving
    the webhook while `reconcile_settlement --dry-run` matches a long statement.
    Every delivery sent meanwhile is stored (202) within seconds, and the dry
    run still keeps nothing."""
    project = f"dryrun-{uuid.uuid4().hex[:10]}"
    db_path = tmp_path / "site.sqlite3"
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env.update(
        DATABASE_URL=f"sqlite:///{db_path}",
        GOOGLE_CLOUD_PROJECT=project,
        FIRESTORE_EMULATOR_HOST=firestore_emulator,
        PAYNOW_WEBHOOK_SECRETS=SECRET,
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
        MEDIA_ROOT=str(tmp_path),
        Q_CLUSTER_NAME=f"dryrun-{uuid.uuid4().hex[:8]}",
    )
    (tmp_path / "metrics").mkdir()
    FirestoreGateway(project).write_wallets([("u1", 0, {})])
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True
    )
    statement = tmp_path / "statement.csv"
    with statement.open("w") as out:
        out.write(HEADER)
        for n in range(STATEMENT_ROWS):
            out.write(f"payment,pay_s{n},,cust{n % 500},10,1.00,EUR,settled,2026-11-20T10:00:00+00:00\n")

    port = free_port()
    url = f"http://127.0.0.1:{port}/api/webhooks/paynow"
    server_log = (tmp_path / "gunicorn.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "revassure.wsgi:application",
            f"--bind=127.0.0.1:{port}",
            "--workers=1",
            "--threads=4",
        ],
        cwd=ROOT,
        env=env,
        stdout=server_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    dry_run = None
    try:
        assert wait_for(lambda: _ready(f"http://127.0.0.1:{port}/healthz"), 60), "gunicorn never answered"
        dry_run = subprocess.Popen(
            [sys.executable, "manage.py", "reconcile_settlement", str(statement), "--dry-run", "--json"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        # Under way: a few thousand rows matched (the scratch shows it, committed chunk
        # by chunk), or a few seconds gone (the rolled-back transaction showed nothing).
        wait_for(
            lambda: (
                dry_run.poll() is not None
                or _db_rows(db_path, "SELECT coalesce(max(rows), 0) FROM settlement_settlementrun")[0][0]
                >= 3000
            ),
            4,
        )
        answers, n = [], 0
        while dry_run.poll() is None and n < 40:  # ...deliveries keep arriving while it runs
            n += 1
            answers.append(_deliver(url, payment(n)))
            time.sleep(0.2)
        sent_during = n
        out, err = dry_run.communicate(timeout=600)
    finally:
        if dry_run is not None and dry_run.poll() is None:
            stop_process_group(dry_run)
        stop_process_group(server)
        server_log.close()

    assert dry_run.returncode == 0, err[-4000:]
    slow = [(status, round(seconds, 1)) for status, seconds in answers if status != 202 or seconds > 6]
    assert not slow, f"{len(slow)} of {len(answers)} deliveries refused or slow: {slow[:5]}"
    assert sent_during >= 5, "the dry run ended before the deliveries could test it"
    stored = _db_rows(db_path, "SELECT event_id FROM backfill_providereventdelivery ORDER BY id")
    assert [row[0] for row in stored] == [f"evt_{k}" for k in range(1, sent_during + 1)]
    found = json.loads(out)
    assert (found["run_id"], found["rows"], found["missing_in_ledger"]) == (
        None,
        STATEMENT_ROWS,
        STATEMENT_ROWS,
    )
    assert _db_rows(db_path, "SELECT count(*) FROM settlement_settlementrun") == [(0,)]
    assert _db_rows(db_path, "SELECT count(*) FROM settlement_settlementrow") == [(0,)]


def _ready(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _deliver(url, raw):
    request = urllib.request.Request(
        url,
        data=raw,
        headers={"Content-Type": "application/json", "PayNow-Signature": sign(raw, SECRET, int(time.time()))},
    )
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    return status, time.monotonic() - started
