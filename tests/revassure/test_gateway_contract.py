"""The gateway's contract with the pinned google-cloud-firestore, over real gRPC.

- Its raw writes are the writes the public batch API builds for the same
  change, and its raw aggregation returns what the public aggregation returns.
- Every call follows FIRESTORE_RETRY_DEADLINE and FIRESTORE_CALL_TIMEOUT: with
  Firestore unreachable, silent, or gone half-way through a transaction, each
  public operation gives up within a small multiple of the deadline (a bound on
  configuration, not a speed test); an injected UNAVAILABLE is retried; a
  failed page of the wallet listing is asked again.

Faults come from a real gRPC server between the client and the emulator
(`FirestoreProxy`, shared in tests/firestore_proxy.py), which forwards each
call as bytes, records the requests, and fails the calls a test picks.
"""

import datetime as dt
import inspect
import socket
import threading
import time
from collections.abc import Callable

import grpc
import pytest
from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.types import firestore as firestore_pb

from backfill.events import PAYMENT, ProviderEvent
from backfill.rules import decide
from devtools.emulator import free_port
from reconciliation import services
from reconciliation.models import ReconciliationRun, RunStatus, RunTrigger
from revassure.firestore import (
    COLLECTIONS,
    MISSING,
    REPORTS,
    WALLETS,
    BalanceChange,
    FirestoreContention,
    FirestoreError,
    FirestoreGateway,
    FirestoreUnavailable,
    WalletView,
    encoding,
)
from revassure.firestore.model import ledger_totals
from tests.firestore_proxy import FirestoreProxy, gateway_at
from tests.helpers import firestore_client, put_wallets, wait_for

# CI's PostgreSQL pass skips it, having run it in the defaults pass: touches Firestore only, never a database.
pytestmark = pytest.mark.same_on_every_database

DEADLINE, CALL_TIMEOUT = 0.5, 0.25
HASTY = {"retry_deadline": DEADLINE, "call_timeout": CALL_TIMEOUT}
# Retries stop at the deadline; the last attempt may take a call timeout more,
# and a transaction may spend one more on its rollback. Slack for a busy machine.
BOUND = 3 * DEADLINE + 2.0
EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


@pytest.fixture
def proxy(firestore_emulator):
    proxy = FirestoreProxy(firestore_emulator)
    yield proxy
    proxy.stop()


@pytest.fixture
def silent_host():
    """host:port of a server that accepts connections and never says a word."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)  # connections complete in the backlog, never accepted
        yield f"127.0.0.1:{sock.getsockname()[1]}"


def public_client_at(host: str, project: str, monkeypatch) -> firestore.Client:
    with monkeypatch.context() as patch:
        patch.setenv("FIRESTORE_EMULATOR_HOST", host)
        return firestore.Client(project=project)


def payment(n: int, uid: str = "u1", points: int = 10) -> ProviderEvent:
    created = dt.datetime(2026, 11, 20, 10, 0, n, 123456, tzinfo=dt.UTC)
    return ProviderEvent(f"evt_{n}", PAYMENT, created, f"pay_{n}", uid, points)


def change(uid: str = "u1") -> BalanceChange:
    return BalanceChange(
        uid, "adjustment", 5, 10, 10, "adjustment-1", {"type": "adjustment", "reason": "test"}
    )


def listened(gateway: FirestoreGateway) -> list[str]:
    """The documents a listener's first snapshots hand over."""
    documents: set[str] = set()
    listener = gateway.listen_writes(
        lambda writes, _: documents.update(w.document for w in writes), since=EPOCH
    )
    listener.stop()
    return sorted(documents)


# Every public operation of the gateway, as a caller makes it.
OPERATIONS: dict[str, Callable[[FirestoreGateway], object]] = {
    "stream_wallets": lambda g: list(g.stream_wallets()),
    "start_aggregation": lambda g: g.start_aggregation(["u1", "u2"], concurrency=4).result(),
    "read_wallets_and_ledgers": lambda g: g.read_wallets_and_ledgers(["u1", "u2"], concurrency=4),
    "ledgers": lambda g: g.ledgers(["u1"], concurrency=4),
    "get_wallet_points": lambda g: g.get_wallet_points(["u1", "u2"]),
    "entries_exist": lambda g: g.entries_exist([("u1", "e000")]),
    "credits_between": lambda g: list(
        g.credits_between(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.datetime(2027, 1, 1, tzinfo=dt.UTC))
    ),
    "event_view": lambda g: g.event_view(payment(1)),
    "apply_provider_event": lambda g: g.apply_provider_event(
        payment(1), decide=decide, allow_negative=False, delivery_id=1
    ),
    "apply_payments": lambda g: g.apply_payments([(payment(1), 1), (payment(2, "u2"), 2)], decide=decide),
    "apply_balance_change": lambda g: g.apply_balance_change(change()),
    "balance_change_applied": lambda g: g.balance_change_applied(change()),
    "write_wallets": lambda g: g.write_wallets([("u9", 0, {})]),
    "append_entry": lambda g: g.append_entry("u1", "e100", {"amount": 1, "type": "purchase"}),
    "put_report": lambda g: g.put_report("run-1", {"checksum": "c"}, [{"uid": "u1", "delta": 1}]),
    "get_report": lambda g: g.get_report("run-1"),
    "stream_reports": lambda g: list(g.stream_reports()),
    "stream_report_violations": lambda g: list(g.stream_report_violations("run-1")),
    "stream_settlement_report_rows": lambda g: list(g.stream_settlement_report_rows("run-1")),
    "put_migration": lambda g: g.put_migration("1", {"status": "running"}),
    "put_config": lambda g: g.put_config("adjustments", {"frozen": False}),
    "get_config": lambda g: g.get_config("adjustments"),
    "ledger_entry_amounts": lambda g: g.ledger_entry_amounts([("u1", "e000"), ("u2", "e000")]),
    "identity_owners": lambda g: g.identity_owners(["purchase-pay_1"]),
    "put_settlement_report": lambda g: g.put_settlement_report(
        "7", {"checksum": "s"}, [("41", {"outcome": "missing_in_ledger"})]
    ),
    "stream_settlement_reports": lambda g: list(g.stream_settlement_reports()),
    # Snapshots: a new one's read time (the server's now), its progress bar, its reads.
    "snapshot_read_time": lambda g: g.snapshot_read_time().year > 2000,
    "count_wallets": lambda g: g.count_wallets(),
    # One instant: the server's present, and whether reads at a read time are honoured
    # (on an emulator, a probe that writes a scratch config document and deletes it).
    "server_time": lambda g: g.server_time().year > 2000,
    "read_time_support": lambda g: g.read_time_support(),
    "snapshot_wallets": lambda g: list(g.snapshot_wallets()),
    "snapshot_collection": lambda g: list(g.snapshot_collection(REPORTS)),
    "stream_documents": lambda g: [d.name for d in g.stream_documents(g.documents, WALLETS)],
    # A restore: is the target empty, what --replace deletes, then the writes.
    "holds_documents": lambda g: g.holds_documents(),
    "snapshot_paths": lambda g: list(g.snapshot_paths()),
    "delete_documents": lambda g: g.delete_documents(["wallets/u9"]),
    "write_documents": lambda g: g.write_documents(
        [{"path": "wallets/u9", "fields": {"points": {"int": "9"}}}]
    ),
    "listen_writes": listened,
}
# Public methods that are not operations of their own, and why.
NOT_OPERATIONS = {
    "document": "builds a document's name; calls nothing",
    "submit": "runs a coroutine on the gateway's loop: how the async operations above are made",
    "snapshot_document": "converts a document read by snapshot_wallets / snapshot_collection; calls nothing",
    "raw_document": "converts a snapshot line for write_documents; calls nothing",
    "ping": "a readiness probe that must not retry: test_ping_answers_once_without_retrying",
    "connect": "makes the clients now, bound to the address of the moment; calls nothing",
    "close": "ends the clients: test_a_closed_gateway_lets_its_thread_go_and_connects_again_when_used",
    "start_managed_export": "Google Cloud's Admin API only; refused on any emulator before a call",
    "managed_export_state": "Google Cloud's Admin API only; refused on any emulator before a call",
}
TRANSACTIONS = ["read_wallets_and_ledgers"]
WRITES = ("apply_", "write_", "append_", "put_", "delete_", "read_time_support")
READS = [op for op in OPERATIONS if not op.startswith(WRITES)]


def gives_up_in_time(operation: str, gateway: FirestoreGateway) -> float:
    started = time.monotonic()
    with pytest.raises(FirestoreError):
        OPERATIONS[operation](gateway)
    elapsed = time.monotonic() - started
    assert elapsed < BOUND, f"{operation} gave up after {elapsed:.1f} s; deadline {DEADLINE} s"
    return elapsed


def test_every_public_operation_of_the_gateway_is_in_the_contract():
    public = {
        name for name, member in inspect.getmembers(FirestoreGateway, inspect.isfunction) if name[0] != "_"
    }
    assert public - OPERATIONS.keys() - NOT_OPERATIONS.keys() == set(), "add them to OPERATIONS"
    assert OPERATIONS.keys() | NOT_OPERATIONS.keys() <= public  # nothing stale either


def test_the_gateway_writes_only_the_collections_it_declares(proxy, gateway, firestore_project, monkeypatch):
    put_wallets(gateway, {"u1": (10, [10]), "u2": (0, [])})
    patient = gateway_at(proxy.host, firestore_project, monkeypatch)
    heal = BalanceChange("u1", "rebalance", 0, 10, 10, "rebalance-1", {"type": "heal"})
    assert patient.apply_balance_change(heal).status == "applied"  # its auditLog record
    for operation in sorted(OPERATIONS.keys() - READS):
        OPERATIONS[operation](patient)

    written = set()
    for sent in proxy.sent("Commit"):
        for write in firestore_pb.CommitRequest.pb().FromString(sent).writes:
            path = (write.update.name or write.delete).split("/documents/", 1)[1]
            written.add(tuple(path.split("/")[0::2]))  # (collection, subcollection below it, ...)

    declared = {(c.name,) for c in COLLECTIONS} | {(c.name, s) for c in COLLECTIONS for s in c.subcollections}
    assert written - declared == set(), "declare them in revassure/firestore/model.py COLLECTIONS"
    # Every declared collection is written by some operation (identity shards are never documents).
    assert declared - written == {("ledgerIdentities",)}


def test_a_closed_gateway_lets_its_thread_go_and_connects_again_when_used(gateway):
    put_wallets(gateway, {"u1": (10, [10])})
    loops = lambda: sum(thread.name == "firestore-gateway" for thread in threading.enumerate())  # noqa: E731
    before = loops()

    gateway.close()

    assert wait_for(lambda: loops() == before - 1, 10)
    assert gateway.read_wallets_and_ledgers(["u1"], concurrency=1)["u1"].ledger.total == 10
    assert loops() == before


def test_ping_answers_once_without_retrying(proxy, gateway, firestore_project, monkeypatch):
    gateway.ping()
    proxy.fail = lambda method, n: grpc.StatusCode.UNAVAILABLE if n == 1 else None
    probe = gateway_at(proxy.host, firestore_project, monkeypatch)

    with pytest.raises(FirestoreUnavailable):
        probe.ping(timeout=CALL_TIMEOUT)
    probe.ping(timeout=CALL_TIMEOUT)  # the next probe goes through
    assert proxy.calls["BatchGetDocuments"] == 2

    closed = gateway_at(f"127.0.0.1:{free_port()}", firestore_project, monkeypatch, **HASTY)
    started = time.monotonic()
    with pytest.raises(FirestoreUnavailable):
        closed.ping(timeout=CALL_TIMEOUT)
    assert time.monotonic() - started < BOUND


# -- deadlines ------------------------------------------------------------------


@pytest.mark.parametrize("operation", OPERATIONS)
def test_each_operation_gives_up_within_the_deadline_when_firestore_refuses_connections(
    operation, firestore_project, monkeypatch
):
    closed = f"127.0.0.1:{free_port()}"
    gives_up_in_time(operation, gateway_at(closed, firestore_project, monkeypatch, **HASTY))


@pytest.mark.parametrize(
    "operation",
    [
        "stream_wallets",
        "start_aggregation",
        "get_wallet_points",
        "apply_payments",
        "apply_provider_event",
        "apply_balance_change",
        *TRANSACTIONS,
    ],
)
def test_each_operation_gives_up_within_the_deadline_when_firestore_never_answers(
    operation, silent_host, firestore_project, monkeypatch
):
    gives_up_in_time(operation, gateway_at(silent_host, firestore_project, monkeypatch, **HASTY))


@pytest.mark.parametrize("operation", TRANSACTIONS)
def test_a_transaction_gives_up_within_the_deadline_when_firestore_goes_away_after_it_began(
    operation, proxy, gateway, firestore_project, monkeypatch
):
    put_wallets(gateway, {"u1": (10, [10]), "u2": (0, [])})
    proxy.fail = lambda method, n: None if method == "BeginTransaction" else grpc.StatusCode.UNAVAILABLE

    # A long call timeout: BeginTransaction must go through however busy the machine.
    gateway = gateway_at(proxy.host, firestore_project, monkeypatch, retry_deadline=DEADLINE)
    gives_up_in_time(operation, gateway)

    assert proxy.calls["BeginTransaction"] >= 1
    assert proxy.calls["BatchGetDocuments"] > 1  # retried until the deadline, then given up


@pytest.mark.django_db
def test_a_reconcile_gives_up_within_the_deadline_when_firestore_goes_away_mid_run(
    proxy, gateway, firestore_project, monkeypatch, settings
):
    settings.RECONCILE_CHUNK_SIZE = 10
    gateway.write_wallets((f"w{n:03d}", 1, {"e": {"amount": 1}}) for n in range(100))
    # The first 25 aggregations go through, then Firestore is gone.
    proxy.fail = lambda method, n: (
        grpc.StatusCode.UNAVAILABLE if proxy.calls["RunAggregationQuery"] > 25 else None
    )
    started = time.monotonic()

    with pytest.raises(FirestoreUnavailable):
        services.run_inline(
            actor=None,
            trigger=RunTrigger.COMMAND,
            gateway=gateway_at(proxy.host, firestore_project, monkeypatch, retry_deadline=DEADLINE),
        )

    assert time.monotonic() - started < BOUND
    assert ReconciliationRun.objects.get().status == RunStatus.FAILED


@pytest.mark.parametrize("operation", OPERATIONS)
def test_each_operation_retries_an_injected_unavailable(
    operation, proxy, gateway, firestore_project, monkeypatch
):
    put_wallets(gateway, {"u1": (10, [10]), "u2": (0, [])})
    gateway.put_report("run-1", {"checksum": "c"}, [])
    proxy.fail = lambda method, n: grpc.StatusCode.UNAVAILABLE if n == 1 else None
    patient = gateway_at(proxy.host, firestore_project, monkeypatch)

    result = OPERATIONS[operation](patient)

    # Each kind of call failed once, then went through.
    assert proxy.calls and min(proxy.calls.values()) >= 2, proxy.calls
    if operation in READS:
        assert result == OPERATIONS[operation](gateway)
    elif operation.startswith("apply_"):
        outcomes = result.values() if isinstance(result, dict) else [result]
        assert {outcome.status for outcome in outcomes} == {"applied"}


def test_the_wallets_come_a_page_at_a_time_in_name_order_and_a_failed_page_is_asked_again(
    proxy, gateway, firestore_project, monkeypatch
):
    gateway.write_wallets((f"w{n:03d}", n, {}) for n in reversed(range(10)))  # stored in reverse
    monkeypatch.setattr(encoding, "WALLETS_PAGE", 4)
    proxy.fail = lambda method, n: (
        grpc.StatusCode.UNAVAILABLE if method == "ListDocuments" and n == 2 else None
    )

    wallets = list(gateway_at(proxy.host, firestore_project, monkeypatch).stream_wallets())

    assert wallets == [(f"w{n:03d}", n) for n in range(10)]
    # Three pages (4, 4 and 2 wallets), the second asked twice; each call asked for
    # its page's wallets' points only.
    assert proxy.calls["ListDocuments"] == 4
    pages = [firestore_pb.ListDocumentsRequest.deserialize(sent) for sent in proxy.sent("ListDocuments")]
    assert {(page.page_size, tuple(page.mask.field_paths)) for page in pages} == {(4, ("points",))}
    assert pages[1].page_token == pages[2].page_token != ""


def test_a_refused_conditional_commit_is_decided_again_until_the_deadline(
    proxy, gateway, firestore_project, monkeypatch
):
    put_wallets(gateway, {"u1": (10, [10]), "u2": (10, [10])})
    # Twice someone else moved the wallet first: its condition refused the commit.
    refused = grpc.StatusCode.FAILED_PRECONDITION
    proxy.fail = lambda method, n: refused if method == "Commit" and n <= 2 else None

    outcome = gateway_at(proxy.host, firestore_project, monkeypatch).apply_balance_change(change())

    assert (outcome.status, outcome.points_after) == ("applied", 15)
    assert proxy.calls["Commit"] == 3
    assert proxy.calls["BatchGetDocuments"] == 3  # read and decided again each time

    proxy.fail = lambda method, n: refused if method == "Commit" else None
    proxy.calls.clear()
    started = time.monotonic()
    with pytest.raises(FirestoreContention):
        gateway_at(proxy.host, firestore_project, monkeypatch, retry_deadline=DEADLINE).apply_balance_change(
            change("u2")
        )
    # Attempted until the deadline (at least five times, as the public API does), no longer.
    assert proxy.calls["Commit"] >= 5
    assert time.monotonic() - started < BOUND
    assert gateway.get_wallet_points(["u2"]) == {"u2": (True, 10)}  # nothing written


def test_an_aborted_read_only_transaction_is_attempted_again_until_the_deadline(
    proxy, gateway, firestore_project, monkeypatch
):
    put_wallets(gateway, {"u1": (10, [10])})
    aborted = grpc.StatusCode.ABORTED
    proxy.fail = lambda method, n: aborted if method == "BatchGetDocuments" and n <= 2 else None

    states = gateway_at(proxy.host, firestore_project, monkeypatch).read_wallets_and_ledgers(
        ["u1"], concurrency=1
    )

    assert (states["u1"].points, states["u1"].ledger.total) == (10, 10)
    assert proxy.calls["BeginTransaction"] == 3

    proxy.fail = lambda method, n: aborted if method == "BatchGetDocuments" else None
    proxy.calls.clear()
    started = time.monotonic()
    with pytest.raises(FirestoreContention):
        hasty = gateway_at(proxy.host, firestore_project, monkeypatch, retry_deadline=DEADLINE)
        hasty.read_wallets_and_ledgers(["u1"], concurrency=1)
    assert proxy.calls["BeginTransaction"] >= 5
    assert time.monotonic() - started < BOUND


# -- the raw requests are the public API's ------------------------------------


def writes_sent(proxy) -> list:
    """The writes of the last commit that went through the proxy."""
    return list(firestore_pb.CommitRequest.pb().FromString(proxy.sent("Commit")[-1]).writes)


ALL_KINDS = {
    "text": "evt_1",
    "amount": -5,
    "big": 2**40,
    "ratio": 1.5,
    "flag": True,
    "nothing": None,
    "createdAt": dt.datetime(2026, 11, 20, 10, 0, 0, 123456, tzinfo=dt.UTC),
    "raw": b"\x00\xff",
    "tags": ["a", 1, None],
    "nested": {"k": "v", "n": {"deep": 2}},
    "where": firestore.GeoPoint(48.85, 2.35),
}


def test_a_raw_create_is_what_batch_create_builds(proxy, firestore_project, monkeypatch):
    client = public_client_at(proxy.host, firestore_project, monkeypatch)
    entry = client.collection("wallets").document("u1").collection("ledger").document("purchase-pay_1")
    batch = client.batch()
    batch.create(entry, ALL_KINDS)
    batch.commit()

    name = f"projects/{firestore_project}/databases/(default)/documents/wallets/u1/ledger/purchase-pay_1"
    assert writes_sent(proxy) == [encoding.create_write(name, ALL_KINDS)]
    assert encoding.decode_fields(writes_sent(proxy)[0].update.fields) == entry.get().to_dict()


def test_the_writes_of_a_batched_payment_are_what_the_batch_api_builds(
    proxy, gateway, firestore_project, monkeypatch
):
    put_wallets(gateway, {"u1": (0, [])})
    seen = firestore_client(gateway.project).collection("wallets").document("u1").get().update_time
    event = payment(1)

    outcomes = gateway_at(proxy.host, firestore_project, monkeypatch).apply_payments(
        [(event, 7)], decide=decide
    )
    ours = writes_sent(proxy)

    assert outcomes[7].status == "applied"
    entry = {**decide(event, WalletView(False, True, 0), allow_negative=False).entry, "deliveryId": 7}
    client = public_client_at(proxy.host, firestore_project, monkeypatch)
    batch = client.batch()  # the same change, through the public API, write for write
    for write in ours:
        document = client.document(write.update.name.split("/documents/", 1)[1])
        if write.update_transforms:  # the wallet: points += 10 if unchanged since read
            assert document.id == "u1"
            batch.update(
                document,
                {"points": firestore.Increment(10), "updatedAt": firestore.SERVER_TIMESTAMP},
                option=client.write_option(last_update_time=seen),
            )
        else:  # a document created by the payment: its ledger entry (and any marker)
            fields = encoding.decode_fields(write.update.fields)
            if document.parent.id == "ledger":
                assert fields == entry
            batch.create(document, fields)
    with pytest.raises(gexc.GoogleAPICallError):  # applied already: only the request is wanted
        batch.commit()
    assert ours == writes_sent(proxy)
    assert {write.update.name.rsplit("/", 2)[-2] for write in ours} >= {"ledger", "wallets"}


def test_the_writes_of_transactions_are_what_the_batch_api_builds(
    proxy, gateway, firestore_project, monkeypatch
):
    put_wallets(gateway, {"u1": (0, [])})
    client = public_client_at(proxy.host, firestore_project, monkeypatch)
    wallet = client.document("wallets/u1")
    name = f"projects/{firestore_project}/databases/(default)/documents/wallets/u1"

    batch = client.batch()  # what transaction.update builds for an event
    batch.update(wallet, {"points": firestore.Increment(-3), "updatedAt": firestore.SERVER_TIMESTAMP})
    batch.commit()
    assert writes_sent(proxy) == [encoding.increment_write(name, -3)]

    batch = client.batch()  # what transaction.set(merge=True) builds for a heal
    batch.set(wallet, {"points": 42, "updatedAt": firestore.SERVER_TIMESTAMP}, merge=True)
    batch.commit()
    assert writes_sent(proxy) == [encoding.set_points_write(name, 42)]


def test_wallets_and_ledgers_are_read_in_short_read_only_transactions(
    proxy, gateway, firestore_project, monkeypatch
):
    put_wallets(gateway, {"u1": (10, [10]), "u250": (5, [2, 3])})
    uids = [f"u{n}" for n in range(1, 251)]

    states = gateway_at(proxy.host, firestore_project, monkeypatch).read_wallets_and_ledgers(
        uids, concurrency=8
    )

    assert (states["u1"].points, states["u1"].ledger.total) == (10, 10)
    assert (states["u250"].points, states["u250"].ledger.total) == (5, 5)
    assert not states["u2"].exists and states["u2"].ledger.count == 0
    # 100 wallets a transaction, each read-only, each wallet in one batched read.
    begun = [
        firestore_pb.BeginTransactionRequest.deserialize(sent) for sent in proxy.sent("BeginTransaction")
    ]
    assert len(begun) == 3 and all("read_only" in begun_one.options for begun_one in begun)
    assert proxy.calls["BatchGetDocuments"] == 3 and proxy.calls["RunAggregationQuery"] == 250


def test_a_raw_aggregation_returns_what_the_public_aggregation_returns(
    proxy, gateway, firestore_project, monkeypatch
):
    ledgers = {
        "ints": (0, [10, -3, 5]),
        "a_float": (0, [10, 2.5]),
        "a_string": (0, [10, "5"]),
        "a_missing_amount": (0, [10, MISSING]),
        "empty": (0, []),
        "floats_only": (0, [1.5, 1.5]),
    }
    put_wallets(gateway, ledgers)
    client = public_client_at(proxy.host, firestore_project, monkeypatch)
    ours = gateway_at(proxy.host, firestore_project, monkeypatch)

    for uid in ledgers:
        query = client.collection("wallets").document(uid).collection("ledger")
        public = {
            r.alias: r.value
            for row in query.sum("amount", alias="total").count(alias="count").get()
            for r in row
        }
        public_request = firestore_pb.RunAggregationQueryRequest.pb().FromString(
            proxy.sent("RunAggregationQuery")[-1]
        )
        raw = ours.start_aggregation([uid], concurrency=1).result()[uid]
        raw_request = firestore_pb.RunAggregationQueryRequest.pb().FromString(
            proxy.sent("RunAggregationQuery")[-1]
        )

        assert raw_request == public_request, uid
        # The same answer, through the one rule for an empty ledger's total.
        expected = ledger_totals(public["total"], public["count"])
        assert (raw, type(raw.total)) == (expected, type(expected.total)), uid
    assert ours.read_wallets_and_ledgers(list(ledgers), concurrency=2)["a_float"].ledger.total == 12.5


def test_the_gateway_raises_its_own_errors_with_the_librarys_as_their_cause(firestore_project, monkeypatch):
    closed = gateway_at(f"127.0.0.1:{free_port()}", firestore_project, monkeypatch, **HASTY)

    for operation in ("get_wallet_points", "read_wallets_and_ledgers", "put_config"):
        with pytest.raises(FirestoreError) as raised:
            OPERATIONS[operation](closed)
        assert isinstance(raised.value, FirestoreUnavailable), operation
        assert isinstance(raised.value.__cause__, gexc.GoogleAPIError)
        assert not isinstance(raised.value, gexc.GoogleAPIError)
    with pytest.raises(FirestoreUnavailable):
        list(closed.stream_wallets())
