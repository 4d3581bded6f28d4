"""The gateway's listening: every write of a wallet or ledger entry is handed over, on both emulators."""

import datetime as dt
import threading
import time

import pytest

from tests.helpers import put_wallets, wait_for

# CI's PostgreSQL pass skips it, having run it in the defaults pass: touches Firestore only, never a database.
pytestmark = pytest.mark.same_on_every_database

EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


class Collected:
    def __init__(self):
        self.writes, self.lock = [], threading.Lock()

    def __call__(self, writes, read_time):
        with self.lock:
            self.writes.extend(writes)

    def documents(self):
        with self.lock:
            return sorted(w.document for w in self.writes)


def test_the_first_snapshot_hands_over_the_documents_written_since_the_resume_point(gateway):
    put_wallets(gateway, {"u1": (5, [5]), "u2": (0, [])})
    collected = Collected()
    listener = gateway.listen_writes(collected, since=EPOCH)
    try:
        assert collected.documents() == ["wallets/u1", "wallets/u1/ledger/e000", "wallets/u2"]
        assert listener.active and listener.read_time() is not None
    finally:
        listener.stop()

    quiet = Collected()
    listener = gateway.listen_writes(quiet, since=None)
    listener.stop()
    assert quiet.documents() == []


def test_writes_of_wallets_and_of_ledger_entries_arrive_as_they_happen(gateway):
    put_wallets(gateway, {"u1": (5, [5])})
    collected = Collected()
    listener = gateway.listen_writes(collected)
    try:
        gateway.append_entry("u1", "e100", {"amount": 1, "type": "purchase"})
        gateway.write_wallets([("u2", 3, {"x": {"amount": 3}})])
        expected = ["wallets/u1", "wallets/u1/ledger/e100", "wallets/u2", "wallets/u2/ledger/x"]
        wait_for(lambda: collected.documents() == expected, 10)
        assert collected.documents() == expected
        assert {w.uid for w in collected.writes} == {"u1", "u2"}
        assert all(w.write_time > EPOCH for w in collected.writes)
    finally:
        listener.stop()


def test_each_write_is_handed_over_once_and_the_documents_sent_again_are_not(gateway):
    # Google's emulator answers every commit with a RESET and the target's every
    # document again: only the ones written since the last point are writes.
    put_wallets(gateway, {"u1": (5, [5]), "u2": (0, []), "u3": (1, [1])})
    collected = Collected()
    listener = gateway.listen_writes(collected)
    try:
        gateway.write_wallets([("u2", 1, {})])
        gateway.append_entry("u1", "e100", {"amount": 1, "type": "purchase"})
        gateway.write_wallets([("u2", 2, {})])
        expected = ["wallets/u1", "wallets/u1/ledger/e100", "wallets/u2", "wallets/u2"]
        assert wait_for(lambda: collected.documents() == expected, 10), collected.documents()
        time.sleep(1.0)  # and nothing more arrives
        assert collected.documents() == expected
    finally:
        listener.stop()


def test_every_write_of_concurrent_writers_is_handed_over(gateway):
    # Google's emulator closes a listing with a consistent point stamped after
    # commits the listing left out: a filter on that time lost most of these.
    uids = [f"w{n:03d}" for n in range(60)]
    put_wallets(gateway, {uid: (0, []) for uid in uids})
    collected = Collected()
    listener = gateway.listen_writes(collected)

    def writer(mine):
        for uid in mine:
            gateway.write_wallets([(uid, 5, {})])

    try:
        writers = [threading.Thread(target=writer, args=(uids[k::6],)) for k in range(6)]
        for thread in writers:
            thread.start()
        for thread in writers:
            thread.join()
        expected = [f"wallets/{uid}" for uid in uids]
        assert wait_for(lambda: collected.documents() == expected, 20), sorted(
            set(expected) - set(collected.documents())
        )
    finally:
        listener.stop()
