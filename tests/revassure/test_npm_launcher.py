"""Our npm launcher's own switches (scripts/firestore-emulator.js), whichever
emulator the rest of the session runs on: each test starts the launcher itself.

These are knobs of the launcher, not promises of Firestore: how long an idle
transaction keeps its locks (Firestore: 60 s; shorter here for the killed-worker
tests), how it breaks a cycle of locks (wound-wait, as Firestore does; Google's
emulator waits out its lock timeout instead), the bare package one switch away,
and the one address it listens on.
"""

import socket
import threading
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import pytest
from google.api_core import exceptions as gexc
from google.cloud import firestore

from devtools.emulator import running_emulator

# CI's PostgreSQL pass skips it, having run it in the defaults pass: touches no database.
pytestmark = pytest.mark.same_on_every_database


@pytest.fixture
def launcher(monkeypatch):
    """start(**env): a client on a launcher of its own, started with env."""
    with ExitStack() as stack:

        def start(**env):
            emulator = stack.enter_context(running_emulator(kind="npm", env=env))
            monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", emulator.host)
            return firestore.Client(project=f"launcher-{uuid.uuid4().hex[:12]}")

        yield start


def test_an_idle_transaction_ends_and_releases_its_locks(launcher):
    client = launcher(FIRESTORE_EMULATOR_TRANSACTION_IDLE_MS="300", FIRESTORE_EMULATOR_LOCK_TIMEOUT_MS="5000")
    doc = client.collection("c").document("d")
    doc.set({"n": 0})
    read, done = threading.Event(), threading.Event()
    errors = []

    @firestore.transactional
    def abandon(transaction):
        doc.get(transaction=transaction)
        read.set()
        done.wait(10)
        transaction.update(doc, {"n": -1})

    def idle():
        try:
            abandon(client.transaction())
        except Exception as exc:  # asserted below
            errors.append(exc)

    thread = threading.Thread(target=idle, daemon=True)
    thread.start()
    assert read.wait(10)
    doc.update({"n": 1}, retry=None, timeout=10)  # waits at most until the idle one ends
    done.set()
    thread.join(10)
    assert [type(error) for error in errors] == [gexc.InvalidArgument]  # its commit comes too late
    assert doc.get().get("n") == 1


def test_a_cycle_of_locks_is_broken_by_wound_wait_not_by_the_lock_timeout(launcher):
    client = launcher(FIRESTORE_EMULATOR_LOCK_TIMEOUT_MS="10000")
    a, b = client.collection("c").document("a"), client.collection("c").document("b")
    a.set({"n": 0})
    b.set({"n": 0})
    both_read = threading.Barrier(2)
    errors = []

    def copy_plus_one(source, target):
        attempts = []

        @firestore.transactional
        def copy(transaction):
            attempts.append(1)
            value = source.get(transaction=transaction).get("n")
            if len(attempts) == 1:
                both_read.wait(10)
            transaction.update(target, {"n": value + 1})

        try:
            copy(client.transaction())
        except Exception as exc:  # asserted below
            errors.append(exc)

    started = time.monotonic()
    threads = [threading.Thread(target=copy_plus_one, args=pair, daemon=True) for pair in ((a, b), (b, a))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    elapsed = time.monotonic() - started

    assert errors == []
    assert (a.get().get("n"), b.get().get("n")) in {(1, 2), (2, 1)}
    # Nobody waited for a lock until it timed out: the younger was wounded at once.
    assert elapsed < 10, f"{elapsed:.1f} s: resolved by the 10 s lock timeout, not by wound-wait"


def test_the_bare_package_is_one_switch_away(launcher):
    client = launcher(FIRESTORE_EMULATOR_BARE="1")
    ids = []

    @firestore.transactional
    def read(transaction):
        ids.append(transaction.id)

    read(client.transaction())
    read(client.transaction())
    assert ids[0] == ids[1]  # the package's constant id: no promises kept


def listening_addresses(port: int) -> set[str]:
    """The IPv4 addresses with a socket listening on `port` (Linux /proc/net/tcp)."""
    found = set()
    for row in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = row.split()[1], row.split()[3]
        address, _, hex_port = local.partition(":")
        if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
            found.add(socket.inet_ntoa(int(address, 16).to_bytes(4, "little")))
    return found


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2"])
def test_the_launcher_listens_on_the_address_it_is_given_only(host, monkeypatch):
    # The package binds every interface (0.0.0.0); a development emulator must not be
    # served to the network, and tests/hosts starts it on the address of host C.
    with running_emulator(kind="npm", host=host) as emulator:
        port = int(emulator.host.rsplit(":", 1)[1])
        assert emulator.host == f"{host}:{port}"
        assert listening_addresses(port) == {host}
        monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", emulator.host)
        client = firestore.Client(project=f"launcher-{uuid.uuid4().hex[:12]}")
        client.collection("c").document("d").set({"n": 1})
        assert client.collection("c").document("d").get().to_dict() == {"n": 1}
