"""The test emulator keeps the promises Firestore makes and our code relies on.

Checked with the real google-cloud-firestore client, as our code uses it:
transaction ids of their own; what a read-write transaction read is locked
until it ends (a conflicting commit waits, and a transaction that loses aborts
and is retried by @transactional); no deadlock; a lock that never comes aborts
the waiting commit; `exists` and `update_time` preconditions; commits all or
nothing. Each runs on both emulators and passes on both: a promise only our
launcher would keep is not one the product may lean on (a commit whose client
gave up may still apply; writes in one commit share one update time). Each
fails on the npm package unpatched (FIRESTORE_EMULATOR_BARE=1): see
test_npm_launcher.py for the launcher's own switches.
"""

import threading
import time
import uuid
from contextlib import ExitStack

import pytest
from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1 import FieldFilter
from google.cloud.firestore_v1.field_path import FieldPath

from devtools.emulator import running_emulator

# CI's PostgreSQL pass skips it, having run it in the defaults pass: touches Firestore only, never a database.
pytestmark = pytest.mark.same_on_every_database


@pytest.fixture
def client(firestore_emulator):
    return firestore.Client(project=f"promises-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def own_emulator(monkeypatch):
    """start(**env): a client on an emulator of its own; on ours its locks time out
    after 0.5 s unless env says otherwise (Google's times out after its own 2 s)."""
    with ExitStack() as stack:

        def start(**env):
            emulator = running_emulator(env={"FIRESTORE_EMULATOR_LOCK_TIMEOUT_MS": "500", **env})
            monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", stack.enter_context(emulator).host)
            return firestore.Client(project=f"promises-{uuid.uuid4().hex[:12]}")

        yield start


def run(target, *args):
    """Start target in a thread; the thread, with .error set to what it raised."""
    thread = threading.Thread(target=_capture, args=(target, args), daemon=True)
    thread.error = None
    thread.start()
    return thread


def _capture(target, args):
    try:
        target(*args)
    except BaseException as exc:  # reported by the test that started it
        threading.current_thread().error = exc


# -- transactions -------------------------------------------------------------------


def test_every_transaction_gets_an_id_of_its_own(client):
    doc = client.collection("c").document("d")
    ids = []

    @firestore.transactional
    def read(transaction):
        ids.append(transaction.id)
        doc.get(transaction=transaction)

    for read_only in (False, False, True, True):
        read(client.transaction(read_only=read_only))

    assert len(set(ids)) == 4


def test_a_commit_that_writes_what_an_open_transaction_read_waits_and_the_loser_retries(client):
    doc = client.collection("c").document("d")
    doc.set({"n": 0})
    first_read, first_may_commit = threading.Event(), threading.Event()
    second_saw = []

    @firestore.transactional
    def first(transaction):
        value = doc.get(transaction=transaction).get("n")
        first_read.set()
        first_may_commit.wait(10)
        transaction.update(doc, {"n": value + 1})

    @firestore.transactional
    def second(transaction):
        value = doc.get(transaction=transaction).get("n")
        second_saw.append(value)
        transaction.update(doc, {"n": value + 10})

    one = run(first, client.transaction())
    assert first_read.wait(10)
    two = run(second, client.transaction())
    two.join(0.5)
    assert two.is_alive(), "the second commit did not wait for the first transaction's lock"

    first_may_commit.set()
    one.join(10)
    two.join(10)

    assert (one.error, two.error) == (None, None)
    assert second_saw == [0, 1]  # aborted once, then retried on the committed value
    assert doc.get().get("n") == 11


def test_concurrent_read_then_write_increments_never_lose_an_update(client):
    doc = client.collection("c").document("counter")
    doc.set({"n": 0})
    threads = 8
    barrier = threading.Barrier(threads)

    def one():
        @firestore.transactional
        def increment(transaction):
            value = doc.get(transaction=transaction).get("n")
            transaction.update(doc, {"n": value + 1})

        barrier.wait()
        # Rounds that commit nothing are allowed (Google's emulator aborts one side of
        # each conflict after its lock timeout): what must hold is that none is lost.
        increment(client.transaction(max_attempts=threads * 6))

    workers = [run(one) for _ in range(threads)]
    for worker in workers:
        worker.join(180)

    assert [w.error for w in workers] == [None] * threads
    assert doc.get().get("n") == threads


def test_two_transactions_each_reading_what_the_other_writes_do_not_deadlock(client):
    """Each reads one document and writes the other: a cycle of locks. Both end,
    one after the other, the loser retried by @transactional. How the cycle is
    broken differs, and the product leans on neither: Google's emulator lets a
    commit wait its 2 s lock timeout (twice when both retries meet again: 2.0 s
    and 4.2 s seen), our launcher wounds the younger at once (0.02 s; its own
    test in test_npm_launcher.py)."""
    a, b = client.collection("c").document("a"), client.collection("c").document("b")
    a.set({"n": 0})
    b.set({"n": 0})
    both_read = threading.Barrier(2)
    attempts = {a.id: 0, b.id: 0}

    def copy_plus_one(source, target):
        @firestore.transactional
        def copy(transaction):
            attempts[source.id] += 1
            value = source.get(transaction=transaction).get("n")
            if attempts[source.id] == 1:
                both_read.wait(10)
            transaction.update(target, {"n": value + 1})

        copy(client.transaction())

    workers = [run(copy_plus_one, a, b), run(copy_plus_one, b, a)]
    for worker in workers:
        worker.join(30)

    assert [w.error for w in workers] == [None, None]
    # Serialised, one way or the other; never both from the initial zeros.
    assert (a.get().get("n"), b.get().get("n")) in {(1, 2), (2, 1)}
    assert max(attempts.values()) >= 2, "the cycle was broken by aborting one of them"


def test_a_read_only_transaction_reads_one_snapshot(client):
    wallet = client.collection("wallets").document("w")
    ledger = wallet.collection("ledger")
    wallet.set({"points": 10})
    ledger.document("e0").set({"amount": 10})
    first_read, paid = threading.Event(), threading.Event()
    seen = []

    @firestore.transactional
    def read(transaction):
        seen.append(wallet.get(transaction=transaction).get("points"))
        first_read.set()
        paid.wait(10)
        seen.append(ledger.sum("amount", alias="total").get(transaction=transaction)[0][0].value)
        seen.append(ledger.document("e1").get(transaction=transaction).exists)

    reader = run(read, client.transaction(read_only=True))
    assert first_read.wait(10)
    payment = client.batch()
    payment.create(ledger.document("e1"), {"amount": 5})
    payment.update(wallet, {"points": firestore.Increment(5)})
    payment.commit()
    paid.set()
    reader.join(10)

    assert reader.error is None
    assert seen == [10, 10, False]  # the payment committed after the snapshot: unseen
    assert wallet.get().get("points") == 15


def test_read_only_transactions_and_plain_reads_take_no_locks(client):
    doc = client.collection("c").document("d")
    doc.set({"n": 0})
    read, done = threading.Event(), threading.Event()

    @firestore.transactional
    def look(transaction):
        doc.get(transaction=transaction)
        read.set()
        done.wait(10)

    reader = run(look, client.transaction(read_only=True))
    assert read.wait(10)
    doc.get()
    doc.update({"n": 1}, retry=None, timeout=3)  # would wait for a lock, then abort
    done.set()
    reader.join(10)
    assert reader.error is None
    assert doc.get().get("n") == 1


def test_a_commit_that_cannot_get_its_lock_in_time_is_aborted(own_emulator):
    client = own_emulator()
    doc = client.collection("c").document("d")
    doc.set({"n": 0})
    read, done = threading.Event(), threading.Event()

    @firestore.transactional
    def hold(transaction):
        value = doc.get(transaction=transaction).get("n")
        read.set()
        done.wait(10)
        transaction.update(doc, {"n": value + 1})

    holder = run(hold, client.transaction())
    assert read.wait(10)
    started = time.monotonic()
    with pytest.raises(gexc.Aborted):
        doc.update({"n": 100}, retry=None, timeout=10)
    assert time.monotonic() - started >= 0.45
    done.set()
    holder.join(10)
    assert holder.error is None
    assert doc.get().get("n") == 1


# -- preconditions ------------------------------------------------------------------


def test_create_fails_on_an_existing_document_and_update_on_a_missing_one(client):
    doc = client.collection("c").document("d")
    doc.create({"n": 1})
    with pytest.raises(gexc.AlreadyExists):
        doc.create({"n": 2})
    with pytest.raises(gexc.NotFound):
        client.collection("c").document("missing").update({"n": 1})
    assert doc.get().get("n") == 1


def test_an_update_time_precondition_holds_only_for_the_stored_update_time(client):
    doc = client.collection("c").document("d")
    written = doc.set({"n": 1})
    assert doc.get().update_time == written.update_time  # the time returned is the one stored

    moved = doc.update({"n": 2}, option=client.write_option(last_update_time=written.update_time))

    assert moved.update_time > written.update_time
    with pytest.raises(gexc.FailedPrecondition):
        doc.update({"n": 3}, option=client.write_option(last_update_time=written.update_time))
    with pytest.raises(gexc.FailedPrecondition):
        client.collection("c").document("missing").update(
            {"n": 3}, option=client.write_option(last_update_time=written.update_time)
        )
    assert doc.get().get("n") == 2


# -- atomic commits ------------------------------------------------------------------


def test_a_commit_with_one_failing_write_applies_none_of_its_writes(client):
    existing = client.collection("c").document("existing")
    written = existing.set({"n": 1})
    kept = client.collection("c").document("kept")
    kept.set({"n": 1})
    new = client.collection("c").document("new")

    batch = client.batch()
    batch.set(new, {"n": 1})
    batch.update(existing, {"n": 2})
    batch.create(kept, {"n": 3})  # kept exists
    with pytest.raises(gexc.AlreadyExists):
        batch.commit()
    assert not new.get().exists
    assert existing.get().get("n") == 1

    existing.update({"n": 5})
    stale = client.batch()
    stale.set(new, {"n": 1})
    stale.delete(kept)
    stale.update(existing, {"n": 4}, option=client.write_option(last_update_time=written.update_time))
    with pytest.raises(gexc.FailedPrecondition):
        stale.commit()
    assert not new.get().exists
    assert kept.get().exists
    assert existing.get().get("n") == 5


# -- listing ------------------------------------------------------------------------


def test_list_documents_pages_a_collection_in_name_order(client):
    wallets = client.collection("wallets")
    for uid in ("w3", "w1", "w2", "w0"):  # stored out of order
        wallets.document(uid).set({"points": 1})
    wallets.document("w9").collection("ledger").document("e1").set({"amount": 1})  # w9 itself is missing

    listed = [ref.id for ref in wallets.list_documents(page_size=2)]

    # Three pages, in name order; the missing parent of a subcollection is listed
    # too, as the public client asks (show_missing).
    assert listed == ["w0", "w1", "w2", "w3", "w9"]


def test_a_collection_group_query_reads_every_collection_of_its_id_with_filters_order_and_cursors(client):
    for uid, entry, kind, at in [
        ("w2", "b", "purchase", 3),
        ("w1", "a", "purchase", 3),
        ("w1", "c", "purchase", 1),
        ("w1", "d", "redemption", 2),
        ("w3", "e", "purchase", 9),
    ]:
        client.document(f"wallets/{uid}/ledger/{entry}").set({"type": kind, "at": at, "amount": 5})
    client.document("other/x/ledger/f").set({"type": "purchase", "at": 2, "amount": 5})
    client.document("wallets/w1/notes/g").set({"type": "purchase", "at": 2})  # another collection id

    query = (
        client.collection_group("ledger")
        .where(filter=FieldFilter("type", "==", "purchase"))
        .where(filter=FieldFilter("at", ">=", 1))
        .where(filter=FieldFilter("at", "<=", 3))
        .order_by("at")
        .order_by(FieldPath.document_id())
        .select(["at"])
    )
    found = list(query.stream())
    # Any depth, any parent; ties on `at` in name order; only the selected field.
    assert [s.reference.path for s in found] == [
        "wallets/w1/ledger/c",
        "other/x/ledger/f",
        "wallets/w1/ledger/a",
        "wallets/w2/ledger/b",
    ]
    assert found[0].to_dict() == {"at": 1}
    after = [s.reference.path for s in query.start_after(found[1]).limit(2).stream()]
    assert after == ["wallets/w1/ledger/a", "wallets/w2/ledger/b"]
