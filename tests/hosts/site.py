"""Three hosts on one machine, built with Linux namespaces, running the real product.

- host C is the root namespace, at 10.77.N.1 on a bridge of its own: this
  machine's PostgreSQL and Redis (listening on 127.0.0.1 only) through small
  TCP forwarders bound to C's address, the Firestore emulator, started on
  C's address, and a Cloud Storage emulator there (gcp-storage-emulator, in
  memory), which is the hosts' shared storage (REVASSURE_STORAGE=gcs): an
  upload kept on A is read by a worker on B;
- host A (10.77.N.2) runs gunicorn and a qcluster, host B (10.77.N.3) a
  second qcluster, each joined to the bridge by a veth pair.

A host is a network namespace (its own loopback and address), a UTS namespace
(its own hostname: `hosta`, `hostb`) and a mount namespace with private tmpfs
on /tmp, /var/tmp and /dev/shm (its disk: working files, TMPDIR,
PROMETHEUS_MULTIPROC_DIR, snapshots, uploads), where the checkout is mounted
read-only, as the image every machine runs. A host never reaches another's
loopback or files: they share only what is on C. Killing a host is SIGKILL to
every process in its network namespace (`ip netns pids`); booting it again
gives it a fresh disk.

Needs root (namespaces, veth pairs, mounts) and DATABASE_URL on PostgreSQL
with REDIS_URL (.ci/run's second pass sets both): otherwise HostsUnavailable,
saying which is missing (the tests are skipped; the bench says so). Namespaces,
links, forwarders, the emulators, the database and the queue are removed at
the end, failed or not. `running_site` is what the tests' fixture and
`make bench --only workers` (bench/workers.py) both start.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import psycopg.rows
import redis
from gcp_storage_emulator.server import create_server

from backfill.events import sign
from devtools.emulator import free_port, running_emulator
from revassure.sealing.canonical import line
from tests.helpers import AUDIENCE, SCHEDULER
from tests.hosts.machines import (
    PREFIX,
    PYTHON,
    Admin,
    Certificates,
    Forwarders,
    Host,
    free_subnet,
    ip,
    kill_namespace,
    namespaces_refusal,
    remove_leftovers,
    services_refusal,
)

WEBHOOK_SECRET = "whsec_hosts_test_only"
PASSWORD = secrets.token_urlsafe(12)
# Leases and the lapses the sweeps wait for, short so that a dead host's work is
# taken over within seconds (production: tens of seconds to minutes).
LEASE_SECONDS = 5
# The wallets seeded in Firestore: about 5% drifted, 5 with a malformed entry
# (demo.wallets.demo_wallets, deterministic: tests rebuild them to know
# what the ledgers hold).
WALLETS = 2000
SEEDED = {"count": WALLETS, "entries_per_wallet": 6, "drift_share": 0.05, "malformed": 5, "seed": 24}


@dataclass
class Hosts:
    a: Host
    b: Host
    c_address: str
    url: str  # host A's gunicorn
    project: str
    database: str  # its name, on this machine's PostgreSQL
    dsn: str  # the test's own connection to it (an observer, from C)
    queue: str  # the Redis list both clusters take tasks from
    emulator_host: str
    emulator_kind: str
    certificates: Certificates
    seeded: int = WALLETS  # wallets in Firestore before any test

    def job(self, path: str, body: dict) -> dict:
        """Call the job API on host A as Cloud Scheduler does (a Google-signed ID token)."""
        request = urllib.request.Request(
            f"{self.url}/api/jobs/{path}",
            data=json.dumps(body).encode(),
            headers={
                "Authorization": f"Bearer {self.certificates.token()}",
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def sql(self, query: str, *params) -> list[dict]:
        """Rows of the hosts' database, read by the test (an observer on C)."""
        with psycopg.connect(self.dsn, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    def admin(self) -> Admin:
        return Admin(self.url, "olga", PASSWORD)

    def wait(self, what: str, predicate, timeout: float, every: float = 0.05):
        """Until `predicate()` is truthy (its value), or fail saying what did not happen."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(every)
        raise AssertionError(f"{what}: not within {timeout} s\n{self.a.log_tails()}\n{self.b.log_tails()}")

    def boot(self, host: Host, **env: str) -> None:
        """Boot a host (again) and start its workers."""
        if host.anchor is None:
            host.boot()
        host.start_workers(**env)

    def workers(self, **env: str) -> None:
        """Both hosts' clusters running with `env` (e.g. a chunk size): those running
        with another are stopped gracefully and started again."""
        changed = [
            host
            for host in (self.a, self.b)
            if "qcluster" not in host.processes or {**host.env, **host.workers_env} != {**host.env, **env}
        ]
        for host in changed:
            if "qcluster" in host.processes:
                host.stop("qcluster")
        for host in changed:
            self.boot(host, **env)
        for host in (self.a, self.b):
            host.workers_started()

    def sweep_once_lapsed(self) -> None:
        """Make the minute's sweeps due once the leases of a host killed now have
        lapsed, rather than at their next minute (time compressed: a cluster's
        guard still runs them, at its first look at the schedules after that; it
        looks every 30 s)."""
        self.sql(
            "UPDATE django_q_schedule SET next_run = now() + %s * interval '1 second'"
            " WHERE name LIKE 'sweep-%%'",
            LEASE_SECONDS + 1,
        )

    def kill_b(self) -> float:
        """SIGKILL every process of host B; host A takes tasks again, and its sweeps
        are due once B's leases lapse. When it happened (time.monotonic())."""
        self.b.kill()
        killed = time.monotonic()
        self.a.resume_taking_tasks()
        self.sweep_once_lapsed()
        return killed

    def log_tails(self) -> str:
        return f"{self.a.log_tails()}\n{self.b.log_tails()}"

    # -- reconciliation runs, as people and the records see them ----------------

    def request_run(self, admin: Admin) -> int:
        """Ops press "Run reconciliation now" on host A: the queued run's id."""
        changelist = "/admin/reconciliation/reconciliationrun/"
        page = admin.post(changelist + "run-now/", {}, admin.get(changelist))
        found = re.search(r"Reconciliation run (\d+) queued", page)
        assert found, "the admin did not say the run was queued"
        return int(found.group(1))

    def run_row(self, run_id: int) -> dict:
        return self.sql("SELECT * FROM reconciliation_reconciliationrun WHERE id = %s", run_id)[0]

    def finished(self, run_id: int, timeout: float) -> dict:
        return self.wait(
            f"run {run_id} finished",
            lambda: (row := self.run_row(run_id))["status"] in ("completed", "failed") and row,
            timeout,
            every=0.2,
        )

    def request_snapshot(self, admin: Admin) -> int:
        """Ops press "Take a snapshot" on host A: the snapshot's id."""
        admin.post("/admin/snapshots/snapshot/start/", {"start": "Take a snapshot"})
        found = re.search(r"/snapshot/(\d+)/change/", admin.location)
        assert found, f"the admin did not lead to the snapshot's page: {admin.location}"
        return int(found.group(1))

    # -- settlement runs ------------------------------------------------------------

    def upload_statement(self, admin: Admin, body: bytes, name: str = "paynow.csv") -> int:
        """Ops import a settlement statement on host A's admin (a file upload): the run's id."""
        admin.upload("/admin/settlement/settlementrun/upload/", "statement", name, body)
        found = re.search(r"/settlementrun/(\d+)/change/", admin.location)
        assert found, f"the upload did not lead to the run's page: {admin.location}"
        return int(found.group(1))

    def settlement_run(self, run_id: int) -> dict:
        return self.sql("SELECT * FROM settlement_settlementrun WHERE id = %s", run_id)[0]

    def settlement_finished(self, run_id: int, timeout: float) -> dict:
        return self.wait(
            f"settlement run {run_id} finished",
            lambda: (row := self.settlement_run(run_id))["status"] in ("completed", "failed") and row,
            timeout,
            every=0.2,
        )

    def settlement_reports(self, *run_ids: int) -> dict[int, dict]:
        """Each settlement run's sealed report as the product holds it: its header,
        its rows' records in the order stored, their digest and its checksum."""
        found = self.a.shell(SETTLEMENT_REPORTS.format(run_ids=list(run_ids)))
        return {int(run_id): report for run_id, report in found.items()}

    def deliver(self, body: bytes) -> int:
        """One webhook delivery from the payment provider to host A, signed: the status answered."""
        header = sign(body, WEBHOOK_SECRET, int(time.time()))
        request = urllib.request.Request(
            f"{self.url}/api/webhooks/paynow",
            data=body,
            headers={"Content-Type": "application/json", "PayNow-Signature": header},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    def open_wallets(self, uids: list[str]) -> None:
        """Wallets the points app makes: at 0 points, with an empty ledger."""
        self.a.shell(OPEN_WALLETS.format(uids=uids))

    def wallets(self, uids: list[str]) -> dict[str, dict]:
        """{uid: {"points", "entries": {entry id: amount}}} as Firestore holds them."""
        return self.a.shell(WALLETS_OF.format(uids=uids))

    def unfinished_work(self) -> dict[str, int]:
        """What is still to do in the database: none of it once nothing was lost."""
        counts = self.sql(UNFINISHED)[0]
        return {name: count for name, count in counts.items() if count}

    def same_answer_inline(self, run_id: int, **env: str) -> tuple[dict, dict]:
        """Run reconciliation inline on host A (one process) over the same wallets, and
        check run `run_id` found exactly the same: the same wallets checked,
        violations, deltas and totals; its report, given the inline run's identity,
        is the inline run's report to the byte (the checksums differ only by what
        identifies each run). Both reports."""
        inline = json.loads(self.a.manage("reconcile", "--json", **env))
        reports = self.reports(run_id, inline["run_id"])
        ours, theirs = reports[run_id], reports[inline["run_id"]]
        assert _findings(ours) == _findings(theirs)
        assert _checksum(ours["header"], ours["violations"]) == ours["checksum"]
        as_inline = {**ours["header"], **{key: theirs["header"][key] for key in IDENTITY}}
        assert _checksum(as_inline, ours["violations"]) == theirs["checksum"]
        assert ours["checksum"] != theirs["checksum"]
        return ours, theirs

    def reports(self, *run_ids: int) -> dict[int, dict]:
        """Each run's sealed report as the product holds it: its canonical header,
        its violation records, its checksum, and who counted its chunks."""
        found = self.a.shell(REPORTS.format(run_ids=list(run_ids)))
        return {int(run_id): report for run_id, report in found.items()}


# What identifies a run rather than what it found: its id, who asked and how,
# when it ran and read (its instant), and its place in the chain.
IDENTITY = (
    "run_id",
    "trigger",
    "requested_by",
    "started_at",
    "finished_at",
    "read_time",
    "chain_seq",
    "previous_checksum",
)


def _checksum(header: dict, violations: list[dict]) -> str:
    """A reconciliation report's checksum from its canonical form (reconciliation/reports.py)."""
    digest = hashlib.sha256(line(header))
    for record in violations:
        digest.update(line(record))
    return digest.hexdigest()


def _findings(report: dict) -> dict:
    header = {key: value for key, value in report["header"].items() if key not in IDENTITY}
    return {"header": header, "violations": report["violations"]}


def _database_url(url: str, *, host: str, port: int, name: str) -> str:
    parts = urllib.parse.urlsplit(url)
    credentials = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urllib.parse.urlunsplit((parts.scheme, f"{credentials}{host}:{port}", f"/{name}", "", ""))


REPORTS = """
import json
from reconciliation import reports
from reconciliation.models import ReconciliationRun
found = {{}}
for run in ReconciliationRun.objects.filter(pk__in={run_ids}):
    found[run.pk] = {{
        "header": reports.header(run),
        "violations": [reports.violation_record(v) for v in reports.violations_of(run)],
        "checksum": run.checksum,
        "checked_by": run.checked_by,
    }}
print(json.dumps(found))
"""

SETTLEMENT_REPORTS = """
import json
from settlement import reports
from settlement.models import SettlementRun
from settlement.records import record
found = {{}}
for run in SettlementRun.objects.filter(pk__in={run_ids}):
    found[run.pk] = {{
        "header": reports.header(run),
        "rows": [record(row) for row in reports.rows_of(run)],
        "rows_sha256": reports.rows_digest(run),
        "checksum": run.checksum,
    }}
print(json.dumps(found, default=str))
"""

WALLETS_OF = """
import json
from revassure.firestore import MISSING, get_gateway
gateway, uids = get_gateway(), {uids}
points, ledgers = gateway.get_wallet_points(uids), gateway.ledgers(uids, concurrency=8)
found = {{
    uid: {{
        "points": None if points[uid][1] is MISSING else points[uid][1],
        "entries": {{entry: fields.get("amount") for entry, fields in ledgers[uid]}},
    }}
    for uid in uids
}}
print(json.dumps(found))
"""

OPEN_WALLETS = """
from revassure.firestore import get_gateway
print(get_gateway().write_wallets((uid, 0, {{}}) for uid in {uids}))
"""

UNFINISHED = """
SELECT
  (SELECT count(*) FROM reconciliation_reconciliationrun WHERE status IN ('pending', 'running')) AS runs,
  (SELECT count(*) FROM snapshots_snapshot WHERE status IN ('pending', 'running')) AS snapshots,
  (SELECT count(*) FROM backfill_datamigration WHERE status IN ('pending', 'running')) AS migrations,
  (SELECT count(*) FROM settlement_settlementrun WHERE status IN ('pending', 'running')) AS settlement_runs,
  (SELECT count(*) FROM backfill_providereventdelivery WHERE status IN ('received', 'failed')) AS deliveries
"""

SETUP_PRODUCT = """
import json
from django.contrib.auth.models import Group, User
from revassure.roles import OPS
user = User.objects.create_user("olga", "olga@example.com", "{password}", is_staff=True)
user.groups.add(Group.objects.get(name=OPS))
print(json.dumps({{"user": user.pk}}))
"""

SEED = """
import json
from demo.wallets import demo_wallets
from revassure.firestore import get_gateway
wallets = demo_wallets(**{seeded})
print(json.dumps({{"wallets": get_gateway().write_wallets(wallets)}}))
"""


class HostsUnavailable(Exception):
    """The hosts cannot be made here; the message says why."""


@contextmanager
def running_site(
    logs: Path,
    *,
    seeded: dict | None = None,
    database_url: str | None = None,
    redis_url: str | None = None,
    **settings: str,
) -> Iterator[Hosts]:
    """Hosts A, B and C running the product, Firestore seeded with the demo wallets
    `seeded` describes (SEEDED by default), both clusters up; `settings` are
    environment variables of every host (e.g. RECONCILE_CHUNK_SIZE). C's
    PostgreSQL server and Redis are those of `database_url` and `redis_url`
    (DATABASE_URL and REDIS_URL by default); a database of the site's own is
    made on that server. Logs go to `logs`. Everything is removed on the way
    out, failed or not. HostsUnavailable when namespaces, PostgreSQL or Redis
    are not at hand; EmulatorUnavailable when the Firestore emulator cannot start."""
    database_url = database_url or os.environ.get("DATABASE_URL", "")
    broker_url = redis_url or os.environ.get("REDIS_URL", "")
    refusal = namespaces_refusal() or services_refusal(database_url, broker_url)
    if refusal:
        raise HostsUnavailable(refusal)
    seeded = seeded or SEEDED
    logs.mkdir(parents=True, exist_ok=True)
    remove_leftovers()
    tag = f"{PREFIX}{os.getpid()}"
    subnet = free_subnet()
    c_address = f"10.77.{subnet}.1"
    postgres = urllib.parse.urlsplit(database_url)
    redis_parts = urllib.parse.urlsplit(broker_url)
    database = f"revassure_hosts_{os.getpid()}"
    queue = f"hosts-{uuid.uuid4().hex[:8]}"
    project = f"hosts-{uuid.uuid4().hex[:10]}"
    here = {"host": postgres.hostname, "port": postgres.port or 5432}
    observer = _database_url(database_url, **here, name=database)
    admin_dsn = _database_url(database_url, **here, name="postgres")

    with ExitStack() as cleanup:
        # The network: a bridge on C, a veth pair to each host.
        bridge = f"{tag}br"
        cleanup.callback(ip, "link", "del", bridge, check=False)
        ip("link", "add", bridge, "type", "bridge")
        ip("addr", "add", f"{c_address}/24", "dev", bridge)
        ip("link", "set", bridge, "up")
        made = {}
        for letter, number in (("a", 2), ("b", 3)):
            namespace, link = f"{tag}{letter}", f"{tag}{letter}"
            cleanup.callback(ip, "netns", "del", namespace, check=False)
            cleanup.callback(kill_namespace, namespace)
            cleanup.callback(ip, "link", "del", link, check=False)
            ip("netns", "add", namespace)
            ip("link", "add", link, "type", "veth", "peer", "name", f"{link}p")
            ip("link", "set", f"{link}p", "netns", namespace)
            ip("link", "set", link, "master", bridge, "up")
            inside = ["netns", "exec", namespace, "ip"]
            ip(*inside, "link", "set", f"{link}p", "name", "eth0")
            ip(*inside, "addr", "add", f"10.77.{subnet}.{number}/24", "dev", "eth0")
            ip(*inside, "link", "set", "eth0", "up")
            ip(*inside, "link", "set", "lo", "up")
            made[letter] = (namespace, f"10.77.{subnet}.{number}")

        # Host C's services on its address.
        forwarders = Forwarders(c_address)
        cleanup.callback(forwarders.close)
        pg_port = forwarders.forward(postgres.port or 5432)
        redis_port = forwarders.forward(redis_parts.port or 6379)
        emulator = cleanup.enter_context(
            running_emulator(host=c_address, env={"FIRESTORE_EMULATOR_TRANSACTION_IDLE_MS": "5000"})
        )
        storage_port = free_port(c_address)
        bucket = f"hosts-{uuid.uuid4().hex[:10]}"
        cloud_storage = create_server(c_address, storage_port, in_memory=True, default_bucket=bucket)
        cloud_storage.start()
        cleanup.callback(cloud_storage.stop)
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}"')
            conn.execute(f'CREATE DATABASE "{database}"')

        def drop_database():
            with psycopg.connect(admin_dsn, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')

        cleanup.callback(drop_database)
        certificates = Certificates(c_address)
        cleanup.callback(certificates.close)
        redis_db = int(redis_parts.path[1:] or 0)
        broker = redis.Redis(host="127.0.0.1", port=redis_parts.port or 6379, db=redis_db)
        cleanup.callback(lambda: [broker.delete(key) for key in broker.scan_iter(f"django_q:{queue}:*")])

        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": "/tmp",
            "TMPDIR": "/tmp",
            # Production settings with HTTP cookies (tests/e2e/server_settings.py).
            "DJANGO_SETTINGS_MODULE": "tests.e2e.server_settings",
            "SECRET_KEY": secrets.token_urlsafe(32),
            "DEBUG": "false",
            "SECURE_SSL_REDIRECT": "false",
            "PASSWORD_LOGIN_ENABLED": "true",
            "ALLOWED_HOSTS": made["a"][1],
            "DATABASE_URL": _database_url(database_url, host=c_address, port=pg_port, name=database),
            "REDIS_URL": f"redis://{c_address}:{redis_port}/{redis_parts.path[1:] or 0}",
            "GOOGLE_CLOUD_PROJECT": project,
            "FIRESTORE_EMULATOR_HOST": emulator.host,
            "Q_CLUSTER_NAME": queue,
            "Q_WORKERS": "2",
            "RECONCILE_CHUNK_SIZE": "100",
            "LOG_LEVEL": "INFO",
            "PAYNOW_WEBHOOK_SECRETS": WEBHOOK_SECRET,
            # The replays here are about machines, not four eyes: one person may run them
            # (tests/backfill/test_four_eyes.py is where a second person is the subject).
            "BACKFILL_PLAN_APPROVAL_ABOVE": str(10**12),
            # Each host's own disk.
            "PROMETHEUS_MULTIPROC_DIR": "/tmp/revassure/metrics",
            "SNAPSHOT_DIR": "/tmp/revassure/snapshots",
            # What both hosts keep for the workers (admin uploads): Cloud Storage on C.
            "REVASSURE_STORAGE": "gcs",
            "GS_BUCKET_NAME": bucket,
            "STORAGE_EMULATOR_HOST": f"http://{c_address}:{storage_port}",
            "WEBHOOK_DRAIN_LEASE_SECONDS": str(LEASE_SECONDS),
            "REPLAY_LEASE_SECONDS": str(LEASE_SECONDS),
            "RECONCILE_LEASE_SECONDS": str(LEASE_SECONDS),
            "SNAPSHOT_LEASE_SECONDS": str(LEASE_SECONDS),
            "SETTLEMENT_LEASE_SECONDS": str(LEASE_SECONDS),
            # The job API, as Cloud Scheduler calls it.
            "JOBS_OIDC_AUDIENCE": AUDIENCE,
            "JOBS_ALLOWED_EMAILS": SCHEDULER,
            "JOBS_OIDC_CERTS_URL": certificates.url,
            **settings,
        }
        a = Host("hosta", made["a"][0], made["a"][1], env, logs)
        b = Host("hostb", made["b"][0], made["b"][1], env, logs)
        for host in (a, b):
            cleanup.callback(lambda host=host: host.anchor and host.kill())
        a.boot()
        b.boot()
        # Host B seeds Firestore while host A migrates the database.
        seeding = subprocess.Popen(
            b.command([PYTHON, "manage.py", "shell", "-c", SEED.format(seeded=seeded)]),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        a.manage("migrate", "--noinput", "-v0")
        a.shell(SETUP_PRODUCT.format(password=PASSWORD))
        written, errors = seeding.communicate(timeout=600)
        if seeding.returncode != 0 or json.loads(written.splitlines()[-1]) != {"wallets": seeded["count"]}:
            raise RuntimeError(f"seeding Firestore failed: {written[-2000:]}{errors[-4000:]}")
        url = f"http://{a.address}:8000"
        a.start(
            "gunicorn",
            [PYTHON, "-m", "gunicorn", "revassure.wsgi:application", f"--bind={a.address}:8000"]
            + ["--workers=2", "--threads=4"],
        )
        found = Hosts(
            a=a,
            b=b,
            c_address=c_address,
            url=url,
            project=project,
            database=database,
            dsn=observer,
            queue=queue,
            emulator_host=emulator.host,
            emulator_kind=emulator.kind,
            certificates=certificates,
            seeded=seeded["count"],
        )
        found.wait("host A's gunicorn answers /healthz", lambda: _answers(f"{url}/healthz"), 60, every=0.2)
        found.workers()
        yield found


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False
