"""Builders and constants the tests share (test modules never import each other)."""

import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from html.parser import HTMLParser

import pytest
from django.core.management import call_command
from django.db import connection
from google.cloud import firestore

from backfill.intake import store_delivery
from devtools.emulator import ROOT
from revassure.firestore import MISSING

# The job endpoints' OIDC audience and the scheduler's service account in tests.
AUDIENCE = "https://revassure.example.com/api/jobs"
# BACKFILL_PLAN_APPROVAL_ABOVE above what any test's events name: a real backfill run needs no plan.
ONE_PERSON_SUFFICES = 10**15
SCHEDULER = "scheduler@revassure-prod.iam.gserviceaccount.com"


# Firestore's own clients that tests asked for, by project: tests/conftest.py closes them after each test.
FIRESTORE_CLIENTS: dict[str, firestore.Client] = {}


def firestore_client(project: str, *, host: str | None = None) -> firestore.Client:
    """Firestore's own client of `project`, for a test that sets up or inspects
    documents behind the gateway's back (as the points app, or someone at the
    console, would): the gateway keeps its clients to itself. One per project
    per test, bound when first asked for to the emulator at `host`, or else
    FIRESTORE_EMULATOR_HOST's; closed when the test ends (tests/conftest.py)."""
    client = FIRESTORE_CLIENTS.get(project)
    if client is None:
        session = os.environ.get("FIRESTORE_EMULATOR_HOST")
        if host is not None:
            os.environ["FIRESTORE_EMULATOR_HOST"] = host  # the client reads it once, when made
        try:
            client = FIRESTORE_CLIENTS[project] = firestore.Client(project=project)
        finally:
            if session is None:
                os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
            else:
                os.environ["FIRESTORE_EMULATOR_HOST"] = session
    return client


def ledger(*amounts, prefix="e"):
    """{entry id: fields} with the given amounts; MISSING leaves `amount` out."""
    entries = {}
    for n, amount in enumerate(amounts):
        fields = {"type": "purchase" if isinstance(amount, int) and amount >= 0 else "redemption"}
        if amount is not MISSING:
            fields["amount"] = amount
        entries[f"{prefix}{n:03d}"] = fields
    return entries


def put_wallets(gateway, wallets):
    """wallets: {uid: (points, [amounts])}"""
    gateway.write_wallets((uid, points, ledger(*amounts)) for uid, (points, amounts) in wallets.items())


def event_line(event_id, kind="payment.succeeded", *, user="u1", payment="pay_1", points=100, **extra):
    """One provider event as a line of an export (JSON)."""
    data = {"payment_id": payment, "user_id": user, "points": points, **extra}
    return json.dumps({"id": event_id, "type": kind, "created": "2026-11-20T10:00:00Z", "data": data})


def stored_event(event_id, kind="payment.succeeded", **fields):
    """A provider event stored as a webhook delivery, not applied yet."""
    return store_delivery(event_line(event_id, kind, **fields).encode(), source="webhook")


# An export with one line of each outcome (wallets u1 at 0 and u2 at 10 points).
EXPORT = [
    event_line(
        "evt_r1", "payment.refunded", payment="pay_1", points=30, refund_id="re_1"
    ),  # before its payment
    event_line("evt_1", payment="pay_1", points=100),
    event_line("evt_1", payment="pay_1", points=100),  # resent
    event_line("evt_9", payment="pay_1", points=100),  # same payment, another event id
    event_line("evt_2", payment="pay_2", points=50, user="u2"),
    event_line(
        "evt_c", "payment.chargeback", payment="pay_2", points=80, chargeback_id="cb_1", user="u2"
    ),  # too much
    "{not json",
    event_line("evt_x", user="ghost"),
    "",
]


def without_immutability_triggers(*tables: str):
    """What an intruder with database rights could do: drop the triggers that guard
    sealed reports and histories (rolled back with the test). Without tables: those
    of finished reconciliation runs and their violations."""
    tables = tables or ("reconciliation_reconciliationrun", "reconciliation_violation")
    marks = ", ".join(["%s"] * len(tables))
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                f"SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger' AND tbl_name IN ({marks})",
                tables,
            )
        else:
            cursor.execute(
                "SELECT t.tgname, c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                f"WHERE NOT t.tgisinternal AND c.relname IN ({marks})",
                tables,
            )
        found = cursor.fetchall()
        assert found, f"no triggers on {', '.join(tables)}"
        for name, table in found:
            cursor.execute(f"DROP TRIGGER {name}" + ("" if connection.vendor == "sqlite" else f" ON {table}"))


class _Markup(HTMLParser):
    """What the CSP (script-src 'self', no 'unsafe-inline') would refuse."""

    def __init__(self):
        super().__init__()
        self.refused: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for name in attrs:
            if name.startswith("on"):
                self.refused.append(f"<{tag} {name}=...> (inline handler)")
        if "style" in attrs:
            self.refused.append(f"<{tag} style=...> (inline style)")
        if tag == "style":
            self.refused.append("<style> element")
        if tag == "script" and "src" not in attrs and attrs.get("type") != "application/json":
            self.refused.append("<script> without src (inline script)")


def csp_refusals(html: str) -> list[str]:
    """The inline scripts, handlers and styles in a page (our CSP forbids them all)."""
    parser = _Markup()
    parser.feed(html)
    return parser.refused


def cluster(env):
    """A real qcluster (its own process group, so a test can kill it whole)."""
    return subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def wait_for(predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def command_json(name: str, *args) -> dict:
    """Run a management command with --json; the JSON object it printed."""
    out = io.StringIO()
    call_command(name, *map(str, args), "--json", stdout=out, stderr=io.StringIO())
    return json.loads(out.getvalue())


def stop_process_group(process: subprocess.Popen) -> None:
    """A graceful stop of a process started in a session of its own (it stops its
    children), then its whole group: anything it left behind."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def prometheus_tool(name: str) -> str:
    """The path of Debian's `prometheus` or `promtool` (the environment's PROMETHEUS or
    PROMTOOL names another). Missing, the test fails and says how to install it: never a skip."""
    path = os.environ.get(name.upper(), f"/usr/bin/{name}")
    if not os.access(path, os.X_OK):
        pytest.fail(
            f"{name} is not installed at {path}: `make install` installs it (Debian's package "
            f"`prometheus`: apt-get install --no-install-recommends prometheus), or set {name.upper()}"
        )
    return path


class Trickler:
    """A loopback server that reads the request, then answers one byte a second
    (an HTTP answer that never ends, as the slow alert receiver did)."""

    def __init__(self, answer: bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 1000):
        self.answer = answer
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.stop = threading.Event()
        self.asked = threading.Event()  # a request has come in and its answer is trickling
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        self.server.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn):
        with conn:
            conn.recv(65536)
            self.asked.set()
            for byte in self.answer:
                if self.stop.wait(1):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.server.close()
