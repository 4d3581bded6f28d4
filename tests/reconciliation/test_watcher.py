"""The real-time watcher (watch_ledger): a drift written to Firestore becomes a
break within the debounce and a margin; writes that land together never do.
On both emulators (FIRESTORE_EMULATOR=google for Google's)."""

import datetime as dt
import io
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid

import pytest
from django.core.management import CommandError, call_command

from backfill.intake import receive_webhook
from backfill.services import drain_webhooks
from devtools.emulator import ROOT
from reconciliation.models import Break, RunTrigger, WatcherState
from reconciliation.watcher import Watcher
from revassure.firestore import BalanceChange, FirestoreGateway
from tests.helpers import event_line, firestore_client, put_wallets, wait_for

pytestmark = pytest.mark.django_db
DEBOUNCE = 0.2
MARGIN = {"npm": 1.5, "google": 3.0}  # seconds past the debounce: a busy machine, Google's slower emulator


def watch(gateway, act, *, until, timeout=30.0, debounce=DEBOUNCE):
    """Run the watcher here until `until(drifts)` holds or `timeout` passes, with
    `act()` writing to Firestore from another thread once it listens."""
    drifts, stop = [], threading.Event()

    def on_drift(drift):
        drifts.append(drift)
        if until(drifts):
            stop.set()

    watcher = Watcher(gateway=gateway, on_drift=on_drift, debounce=debounce)

    def writer():
        if watcher.listening.wait(timeout):
            act()
        stop.wait(timeout)
        stop.set()

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    watcher.run(stop)
    thread.join()
    return drifts


def set_points(gateway, uid, points):
    """A wallet moved without a ledger entry: a drift, as a buggy writer makes it."""
    firestore_client(gateway.project).collection("wallets").document(uid).update({"points": points})


def test_a_drift_written_becomes_a_break_found_by_the_watcher_within_the_debounce(gateway, emulator_kind):
    put_wallets(gateway, {"u1": (10, [10]), "u2": (5, [5])})
    written = {}

    def act():
        written["at"] = time.monotonic()
        set_points(gateway, "u1", 13)

    drifts = watch(gateway, act, until=bool)
    elapsed = time.monotonic() - written["at"]

    assert [(d["uid"], d["delta"], d["wallet_points"], d["ledger_sum"], d["kind"]) for d in drifts] == [
        ("u1", 3, 13, 10, "drift")
    ]
    assert elapsed < DEBOUNCE + MARGIN[emulator_kind]
    drift = drifts[0]
    write_time = dt.datetime.fromisoformat(drift["write_time"])
    detected_at = dt.datetime.fromisoformat(drift["detected_at"])
    assert write_time.tzinfo == dt.UTC and write_time <= detected_at
    brk = Break.objects.get(uid="u1")
    assert drift["break_id"] == brk.pk and brk.is_open and brk.delta == 3
    assert brk.first_run.trigger == RunTrigger.WATCHER
    state = WatcherState.objects.get(project=gateway.project)
    # Stopped, with a resume point (held back by the quiet ledger stream: conservative).
    assert not state.connected and state.resume_at is not None and state.pending == 0


def test_writes_that_land_together_are_never_reported(gateway):
    put_wallets(gateway, {"u1": (10, [10]), "u2": (0, []), "u3": (0, [])})

    def act():
        # An entry and its increment in one commit; a change in one transaction.
        gateway.append_entry("u1", "p1", {"amount": 7, "type": "purchase"})
        gateway.apply_balance_change(
            BalanceChange("u1", "adjustment", -2, 17, 17, "adj-1", {"type": "adjustment", "reason": "t"})
        )
        # Entry first, wallet a second later: within the debounce window (1.5 s).
        firestore_client(gateway.project).collection("wallets").document("u2").collection("ledger").document(
            "x"
        ).set({"amount": 4, "type": "purchase"})
        time.sleep(1.0)
        set_points(gateway, "u2", 4)
        # And one whose wallet never follows: the watcher reports it, and only it.
        firestore_client(gateway.project).collection("wallets").document("u3").collection("ledger").document(
            "y"
        ).set({"amount": 9, "type": "purchase"})

    drifts = watch(gateway, act, until=bool, debounce=1.5)

    assert [(d["uid"], d["delta"]) for d in drifts] == [("u3", -9)]
    assert list(Break.objects.values_list("uid", flat=True)) == ["u3"]


# -- the real process: `manage.py watch_ledger --json` ------------------------------


@pytest.fixture(scope="module")
def migrated(tmp_path_factory, firestore_emulator):
    """A migrated file database, copied for each watcher process's test."""
    path = tmp_path_factory.mktemp("watcher") / "template.sqlite3"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{path}"}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    return path


class WatcherProcess:
    """`manage.py watch_ledger --json` in its own process group; its lines collected."""

    def __init__(self, env):
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "watch_ledger", "--json"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.drifts, self.logs = [], []
        threading.Thread(target=self._read, args=(self.process.stdout, self.drifts), daemon=True).start()
        threading.Thread(target=self._read, args=(self.process.stderr, self.logs), daemon=True).start()

    @staticmethod
    def _read(stream, into):
        for line in stream:
            try:
                into.append(json.loads(line))
            except ValueError:
                into.append({"message": line})

    def said(self, words):
        return any(words in entry.get("message", "") for entry in list(self.logs))

    def wait_listening(self, timeout=60):
        assert wait_for(lambda: self.said("watcher: listening"), timeout), self.logs

    def kill(self):
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def watcher_process(migrated, tmp_path, firestore_emulator):
    """start(project) -> a running WatcherProcess over a database of this test's own."""
    db_path = tmp_path / "watcher.sqlite3"
    shutil.copy(migrated, db_path)
    started = []

    def start(project):
        env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{db_path}",
            "GOOGLE_CLOUD_PROJECT": project,
            "FIRESTORE_EMULATOR_HOST": firestore_emulator,
            "WATCHER_DEBOUNCE_SECONDS": str(DEBOUNCE),
            "WATCHER_HEARTBEAT_SECONDS": "0.3",
            "LOG_LEVEL": "INFO",
        }
        started.append(WatcherProcess(env))
        return started[-1]

    start.db_path = db_path
    yield start
    for process in started:
        process.stop()


def test_a_webhook_burst_and_its_replay_are_never_reported(gateway, watcher_process, settings):
    put_wallets(gateway, {"sentinel": (0, []), **{f"u{n}": (0, []) for n in range(5)}})
    watcher = watcher_process(gateway.project)
    watcher.wait_listening()

    for _ in range(2):  # the burst, then the provider sending it all again
        for n in range(40):
            receive_webhook(event_line(f"evt_{n}", user=f"u{n % 5}", payment=f"pay_{n}", points=10).encode())
        drain_webhooks(gateway=gateway)
    time.sleep(2 * DEBOUNCE)
    set_points(gateway, "sentinel", 1)

    assert wait_for(lambda: watcher.drifts, 30), watcher.logs
    time.sleep(2 * DEBOUNCE)
    assert [d["uid"] for d in watcher.drifts] == ["sentinel"]
    assert gateway.get_wallet_points([f"u{n}" for n in range(5)]) == {f"u{n}": (True, 80) for n in range(5)}


def watcher_breaks(db_path):
    with sqlite3.connect(db_path) as conn:
        return conn.execute(
            "SELECT b.uid, b.delta, r.trigger FROM reconciliation_break b "
            "JOIN reconciliation_reconciliationrun r ON r.id = b.first_run_id ORDER BY b.uid"
        ).fetchall()


def test_a_watcher_killed_mid_stream_checks_after_its_restart_every_write_it_missed(
    firestore_emulator, watcher_process
):
    project = f"watch-{uuid.uuid4().hex[:10]}"
    gateway = FirestoreGateway(project)
    uids = [f"w{n:02d}" for n in range(30)]
    put_wallets(gateway, {uid: (0, []) for uid in uids})
    drifted = {uid for n, uid in enumerate(uids) if n % 5 == 2}
    first = watcher_process(project)
    first.wait_listening()

    def write(uid, n):
        gateway.append_entry(uid, f"p{n}", {"amount": 10, "type": "purchase"})  # paired: never reported
        if uid in drifted:
            set_points(gateway, uid, 10 + n + 1)  # the wallet moved without an entry: a drift

    for n, uid in enumerate(uids[:10]):
        write(uid, n)
    assert wait_for(lambda: {d["uid"] for d in first.drifts} == drifted & set(uids[:10]), 30), first.logs
    for n, uid in enumerate(uids[10:20], start=10):
        write(uid, n)
        if n == 12:
            first.kill()  # mid-stream: what it had not checked yet, and what follows, it never sees
    for n, uid in enumerate(uids[20:], start=20):
        write(uid, n)

    second = watcher_process(project)
    second.wait_listening()
    assert second.said("re-checking the wallets written since"), second.logs
    reported = {d["uid"] for d in first.drifts + second.drifts}
    assert wait_for(lambda: {d["uid"] for d in first.drifts + second.drifts} == drifted, 30), (
        sorted(reported),
        second.logs,
    )
    time.sleep(3 * DEBOUNCE)
    everything = first.drifts + second.drifts
    assert sorted(d["uid"] for d in everything) == sorted(drifted)  # each once, nothing else
    assert watcher_breaks(watcher_process.db_path) == sorted(
        (uid, int(uid[1:]) + 1, RunTrigger.WATCHER.value) for uid in drifted
    )


class Forwarder:
    """A TCP forwarder to the emulator that a test can cut (every connection
    closed, new ones refused) and restore on the same port: a dropped stream."""

    def __init__(self, upstream):
        self.upstream = upstream.rsplit(":", 1)
        self.port, self.connections = None, []
        self._open()

    def _open(self):
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", self.port or 0))
        self.server.listen(64)
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, args=(self.server,), daemon=True).start()

    def _accept(self, server):
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.create_connection((self.upstream[0], int(self.upstream[1])))
            self.connections += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        # shutdown wakes the accept blocked in its thread (close alone leaves it listening).
        try:
            self.server.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.server.close()
        for connection in self.connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.connections = []

    def restore(self):
        self._open()


def test_a_dropped_stream_is_listened_to_again_and_what_was_written_meanwhile_is_checked(
    gateway, firestore_project, monkeypatch
):
    put_wallets(gateway, {"u1": (10, [10]), "u2": (5, [5])})
    forwarder = Forwarder(os.environ["FIRESTORE_EMULATOR_HOST"])
    with monkeypatch.context() as patch:
        patch.setenv("FIRESTORE_EMULATOR_HOST", f"127.0.0.1:{forwarder.port}")
        through = FirestoreGateway(firestore_project, retry_deadline=5, call_timeout=5)
        through.connect()  # binds its clients to the forwarder now
    drifts, stop = [], threading.Event()

    def on_drift(drift):
        drifts.append(drift)
        if len(drifts) == 2:
            stop.set()

    watcher = Watcher(gateway=through, on_drift=on_drift, debounce=DEBOUNCE)

    def writer():
        if watcher.listening.wait(30):
            set_points(gateway, "u1", 11)
            wait_for(lambda: drifts, 30)
            forwarder.cut()
            set_points(gateway, "u2", 7)  # while the watcher cannot hear
            time.sleep(1.0)
            forwarder.restore()
        stop.wait(60)
        stop.set()

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    watcher.run(stop)
    thread.join()
    forwarder.cut()

    assert [(d["uid"], d["delta"]) for d in drifts] == [("u1", 1), ("u2", 2)]


def test_a_watcher_that_cannot_reach_firestore_tries_again_with_backoff_and_then_listens(
    gateway, firestore_project, monkeypatch, caplog
):
    put_wallets(gateway, {"u1": (10, [10])})
    forwarder = Forwarder(os.environ["FIRESTORE_EMULATOR_HOST"])
    forwarder.cut()  # Firestore out of reach when the watcher starts
    with monkeypatch.context() as patch:
        patch.setenv("FIRESTORE_EMULATOR_HOST", f"127.0.0.1:{forwarder.port}")
        through = FirestoreGateway(firestore_project, retry_deadline=1, call_timeout=1)
        through.connect()  # binds its clients to the forwarder now
    drifts, stop = [], threading.Event()
    watcher = Watcher(gateway=through, on_drift=lambda d: (drifts.append(d), stop.set()), debounce=DEBOUNCE)

    seen = {}

    def writer():
        try:
            time.sleep(2.5)
            seen["listening while cut"] = watcher.listening.is_set()
            forwarder.restore()
            if watcher.listening.wait(30):
                set_points(gateway, "u1", 12)
            stop.wait(30)
        finally:
            stop.set()

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    watcher.run(stop)
    thread.join()
    forwarder.cut()

    assert seen == {"listening while cut": False}
    assert [(d["uid"], d["delta"]) for d in drifts] == [("u1", 2)]
    tries = [r for r in caplog.records if r.getMessage().startswith("watcher: cannot listen")]
    assert len(tries) >= 1
    assert WatcherState.objects.get(project=firestore_project).disconnected_at is not None


# -- the demo's drift by hand: `manage.py inject_drift` -----------------------------


def test_a_drift_injected_by_hand_is_found_by_the_watcher_as_a_break(firestore_emulator, watcher_process):
    project = f"inject-{uuid.uuid4().hex[:10]}"
    gateway = FirestoreGateway(project)
    put_wallets(gateway, {"w1": (30, [10, 20]), "w2": (5, [5])})
    watcher = watcher_process(project)
    watcher.wait_listening()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{watcher_process.db_path}",
        "GOOGLE_CLOUD_PROJECT": project,
        "FIRESTORE_EMULATOR_HOST": firestore_emulator,
    }

    injected = subprocess.run(
        [sys.executable, "manage.py", "inject_drift", "--uid", "w1", "--points", "7", "--wait", "20"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert injected.returncode == 0, injected.stderr
    said = injected.stdout
    assert "Moved wallet w1 from 30 to 37 points with no ledger entry: a drift of +7" in said
    assert "Found by the real-time watcher" in said and "/admin/reconciliation/break/" in said, said
    assert "/admin/wallets/wallet/?uid=w1" in said
    assert gateway.get_wallet_points(["w1"]) == {"w1": (True, 37)}
    assert [(d["uid"], d["delta"], d["wallet_points"], d["ledger_sum"]) for d in watcher.drifts] == [
        ("w1", 7, 37, 30)
    ]
    assert watcher_breaks(watcher_process.db_path) == [("w1", 7, RunTrigger.WATCHER.value)]


def test_inject_drift_picks_a_wallet_without_a_break_and_says_when_no_watcher_runs(gateway):
    put_wallets(gateway, {"u1": (10, [10]), "u2": (3, [3])})
    out = io.StringIO()

    call_command("inject_drift", "--points", "-2", stdout=out)

    (moved,) = [
        uid for uid, (_, points) in gateway.get_wallet_points(["u1", "u2"]).items() if points in (8, 1)
    ]
    assert f"Moved wallet {moved} from" in out.getvalue() and "a drift of -2" in out.getvalue()
    assert "The real-time watcher is down" in out.getvalue() and "watch_ledger" in out.getvalue()


def test_inject_drift_refuses_what_it_cannot_do_and_moves_nothing(gateway, settings):
    put_wallets(gateway, {"u1": (10, [10])})
    gateway.write_wallets([("odd", "ten", {})])
    for arguments, words in (
        (["--uid", "nobody"], "no wallet 'nobody'"),
        (["--uid", "odd"], "not a whole number"),
        (["--uid", "u1", "--points", "0"], "must not be 0"),
    ):
        with pytest.raises(CommandError, match=words):
            call_command("inject_drift", *arguments, stdout=io.StringIO())
    settings.FIRESTORE_EMULATOR_HOST = ""
    with pytest.raises(CommandError, match="emulator only"):
        call_command("inject_drift", "--uid", "u1", stdout=io.StringIO())
    assert gateway.get_wallet_points(["u1", "odd"]) == {"u1": (True, 10), "odd": (True, "ten")}
