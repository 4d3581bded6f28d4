"""Exactly once when the answer to an applied commit is lost.

Firestore may apply a commit whose client never hears back (its deadline
passed, its connection dropped). Each write path is run here through
`FirestoreProxy`, which forwards one chosen Commit to the emulator, lets it
apply, and then tells the client DEADLINE_EXCEEDED or UNAVAILABLE; the path
retries as it does in production. After it, for every path: each payment
credited once and each reversal taken once, every wallet's points equal to its
ledger's sum, and the Django rows saying what happened (applied, never
`failed` or `stale` for money that moved).

Run on both emulators: FIRESTORE_EMULATOR=google (the reference) and the default.
"""

import csv
import io
import json
import time

import grpc
import pytest
from django.core.management import call_command
from django.urls import reverse

from backfill import plan_approval, run_requests, tasks
from backfill.events import sign
from backfill.models import DataMigration, EventStatus, ProviderEventDelivery
from backfill.services import apply_delivery
from reconciliation import changes, corrections, services
from reconciliation.models import BalanceRequest, ReasonCode, RequestState, RunTrigger
from revassure.firestore import get_gateway
from settlement import actions
from settlement.models import Outcome, SettlementRow, SettlementRun
from snapshots import services as snapshots
from tests.firestore_proxy import FirestoreProxy, gateway_at, lose_once
from tests.helpers import event_line, firestore_client, put_wallets, stored_event

pytestmark = pytest.mark.django_db
SECRET = "whsec_test_only_lost_answers"
LOST = [grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE]


@pytest.fixture(params=LOST, ids=["deadline-exceeded", "unavailable"])
def lost(request) -> grpc.StatusCode:
    """How the client learns nothing of the commit Firestore applied."""
    return request.param


@pytest.fixture
def proxy(firestore_emulator):
    proxy = FirestoreProxy(firestore_emulator)
    yield proxy
    proxy.stop()


@pytest.fixture
def direct(firestore_emulator, firestore_project, monkeypatch):
    """A gateway straight to the emulator: to set up and to look, never lossy."""
    return gateway_at(firestore_emulator, firestore_project, monkeypatch)


@pytest.fixture
def product(proxy, firestore_project, monkeypatch, settings, direct):
    """The product's own gateway (get_gateway), and every one it makes from now
    on, talks to Firestore through the proxy."""
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", proxy.host)
    settings.FIRESTORE_EMULATOR_HOST = proxy.host
    settings.PAYNOW_WEBHOOK_SECRETS = [SECRET]
    return get_gateway(firestore_project)


@pytest.fixture
def run_tasks(django_capture_on_commit_callbacks):
    """Commit callbacks (the task enqueues) run as after a real commit."""

    def run(func, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return func(*args, **kwargs)

    return run


def lose(proxy, code: grpc.StatusCode, *documents: str) -> None:
    """Lose the answer of the first commit that writes one of these documents."""
    proxy.lose_answer = lose_once(code, lambda paths: any(path in documents for path in paths))


def books(direct, *uids: str) -> dict[str, tuple[int, list]]:
    """{uid: (points, sorted ledger amounts)}, with points == ledger sum checked."""
    found = {}
    for uid in uids:
        wallet = firestore_client(direct.project).collection("wallets").document(uid).get().to_dict()
        entries = (
            firestore_client(direct.project).collection("wallets").document(uid).collection("ledger").stream()
        )
        amounts = sorted(entry.to_dict()["amount"] for entry in entries)
        assert wallet["points"] == sum(amounts), f"{uid}: points {wallet['points']}, ledger {amounts}"
        found[uid] = (wallet["points"], amounts)
    return found


def was_lost(proxy) -> None:
    assert len(proxy.lost) == 1, "the test lost no answer: it proves nothing"


def deliver(client, line: str):
    raw = line.encode()
    header = sign(raw, SECRET, int(time.time()))
    response = client.post(
        reverse("webhook-paynow"), data=raw, content_type="application/json", HTTP_PAYNOW_SIGNATURE=header
    )
    assert response.status_code in (200, 202), response.content
    return response


PAY_1 = event_line("evt_1", payment="pay_1", points=100)
PAY_2 = event_line("evt_2", user="u2", payment="pay_2", points=50)
REFUND_1 = event_line("evt_r1", "payment.refunded", payment="pay_1", points=30, refund_id="re_1")
ENTRIES = {
    "payment": "wallets/u1/ledger/purchase-pay_1",
    "refund": "wallets/u1/ledger/refund-re_1",
}


# -- webhook intake --------------------------------------------------------------


@pytest.mark.parametrize("which", ["payment", "refund"])
def test_a_webhook_applied_on_its_own_whose_answer_is_lost_is_credited_once_and_recorded_applied(
    which, lost, proxy, product, direct, client, settings, run_tasks
):
    settings.WEBHOOK_APPLY = "per_delivery"
    put_wallets(direct, {"u1": (0, [])})
    if which == "refund":
        run_tasks(deliver, client, PAY_1)
    lose(proxy, lost, ENTRIES[which])

    run_tasks(deliver, client, PAY_1 if which == "payment" else REFUND_1)

    was_lost(proxy)
    assert books(direct, "u1")["u1"] == ((100, [100]) if which == "payment" else (70, [-30, 100]))
    assert set(ProviderEventDelivery.objects.values_list("status", flat=True)) == {EventStatus.APPLIED}


@pytest.mark.parametrize("which", ["payment", "refund"])
def test_the_drain_applies_a_batch_whose_commit_answer_is_lost_once_and_records_each_applied(
    which, lost, proxy, product, direct, client, django_capture_on_commit_callbacks
):
    put_wallets(direct, {"u1": (0, []), "u2": (0, [])})
    with django_capture_on_commit_callbacks(execute=False):  # stored, waiting for the drain
        for line in (PAY_1, PAY_2, REFUND_1):
            deliver(client, line)
    lose(proxy, lost, ENTRIES[which])

    assert tasks.drain_webhooks() == 3

    was_lost(proxy)
    assert books(direct, "u1", "u2") == {"u1": (70, [-30, 100]), "u2": (50, [50])}
    assert list(ProviderEventDelivery.objects.values_list("status", flat=True)) == [EventStatus.APPLIED] * 3


# -- replays ---------------------------------------------------------------------


@pytest.mark.parametrize("which", ["payment", "refund"])
@pytest.mark.usefixtures("one_person_suffices")
def test_a_file_replay_whose_commit_answer_is_lost_applies_each_line_once_and_counts_it_applied(
    which, lost, proxy, product, direct, tmp_path
):
    put_wallets(direct, {"u1": (0, []), "u2": (0, [])})
    export = tmp_path / "export.jsonl"
    export.write_text("\n".join([PAY_1, PAY_2, REFUND_1]) + "\n")
    lose(proxy, lost, ENTRIES[which])
    out = io.StringIO()

    call_command("replay_webhooks", str(export), "--json", stdout=out)

    was_lost(proxy)
    summary = json.loads(out.getvalue())
    assert (summary["total"], summary["applied"], summary["failed"], summary["duplicate"]) == (3, 3, 0, 0)
    assert books(direct, "u1", "u2") == {"u1": (70, [-30, 100]), "u2": (50, [50])}
    assert DataMigration.objects.get().status == "completed"


@pytest.mark.parametrize("which", ["payment", "refund"])
@pytest.mark.usefixtures("one_person_suffices")
def test_a_stored_replay_whose_commit_answer_is_lost_applies_each_delivery_once_and_counts_it_applied(
    which, lost, proxy, product, direct, run_tasks
):
    put_wallets(direct, {"u1": (0, []), "u2": (0, [])})
    for event_id, kind, fields in [
        ("evt_1", "payment.succeeded", {"payment": "pay_1", "points": 100}),
        ("evt_2", "payment.succeeded", {"user": "u2", "payment": "pay_2", "points": 50}),
        ("evt_r1", "payment.refunded", {"payment": "pay_1", "points": 30, "refund_id": "re_1"}),
    ]:
        stored_event(event_id, kind, **fields)
    lose(proxy, lost, ENTRIES[which])

    migration = run_tasks(run_requests.request_stored_replay, actor=None)

    was_lost(proxy)
    migration.refresh_from_db()
    assert migration.status == "completed"
    assert (migration.applied, migration.failed, migration.duplicate) == (3, 0, 0)
    assert books(direct, "u1", "u2") == {"u1": (70, [-30, 100]), "u2": (50, [50])}
    assert set(ProviderEventDelivery.objects.values_list("status", flat=True)) == {EventStatus.APPLIED}


@pytest.mark.usefixtures("one_person_suffices")
def test_a_reversal_backfill_whose_commit_answer_is_lost_reverses_once_and_counts_it_applied(
    lost, proxy, product, direct, tmp_path
):
    put_wallets(direct, {"u1": (0, [])})
    for line in (PAY_1, event_line("evt_3", payment="pay_3", points=40)):
        assert apply_delivery(stored_event_of(line).pk, gateway=product).status == EventStatus.APPLIED
    reversals = tmp_path / "reversals.csv"
    with reversals.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["payment_id", "refund_id", "chargeback_id", "user_id", "points", "created"])
        writer.writerow(["pay_1", "re_1", "", "u1", "30", "2026-11-21T10:00:00Z"])
        writer.writerow(["pay_3", "", "cb_3", "u1", "40", "2026-11-21T11:00:00Z"])
    lose(proxy, lost, "wallets/u1/ledger/chargeback-cb_3")
    out = io.StringIO()

    call_command("backfill_reversals", str(reversals), "--json", stdout=out)

    was_lost(proxy)
    summary = json.loads(out.getvalue())
    assert (summary["applied"], summary["failed"], summary["duplicate"], summary["quarantined"]) == (
        2,
        0,
        0,
        0,
    )
    assert books(direct, "u1")["u1"] == (70, [-40, -30, 40, 100])


def stored_event_of(line: str) -> ProviderEventDelivery:
    data = json.loads(line)
    fields = {"user": data["data"]["user_id"], "payment": data["data"]["payment_id"]}
    return stored_event(data["id"], data["type"], points=data["data"]["points"], **fields)


# -- heals and adjustments --------------------------------------------------------


@pytest.mark.parametrize("strategy", ["rebalance", "post_adjustment"])
def test_a_heal_whose_commit_answer_is_lost_is_executed_once_and_marked_applied_not_stale(
    strategy, lost, proxy, product, direct, reviewer, approver, run_tasks
):
    put_wallets(direct, {"w1": (130, [100, 20]), "ok": (5, [5])})
    run = services.run_inline(actor=None, trigger=RunTrigger.COMMAND, gateway=product)
    [request] = changes.propose_heals(
        [run.violations.get(uid="w1")], actor=reviewer, strategy=strategy, reason="cache bug", gateway=product
    )
    marker = f"auditLog/{request.ledger_entry_id}" if strategy == "rebalance" else None
    lose(proxy, lost, marker or f"wallets/w1/ledger/{request.ledger_entry_id}")

    run_tasks(changes.approve, request.pk, actor=approver, gateway=product)

    was_lost(proxy)
    request.refresh_from_db()
    assert request.state == RequestState.APPLIED
    assert list(request.events.values_list("to_state", flat=True))[-1] == RequestState.APPLIED
    if strategy == "rebalance":
        assert books(direct, "w1")["w1"] == (120, [20, 100])
        audits = list(firestore_client(direct.project).collection("auditLog").stream())
        assert [(a.id, a.to_dict()["before"], a.to_dict()["after"]) for a in audits] == [
            (request.ledger_entry_id, 130, 120)
        ]
    else:
        assert books(direct, "w1")["w1"] == (130, [10, 20, 100])


def test_a_manual_adjustment_whose_commit_answer_is_lost_moves_the_wallet_once_and_is_marked_applied(
    lost, proxy, product, direct, reviewer, approver, run_tasks
):
    put_wallets(direct, {"u1": (40, [40])})
    request = changes.propose_adjustment(
        actor=reviewer,
        uid="u1",
        amount=25,
        reason_code=ReasonCode.GOODWILL,
        reason="late parcel",
        gateway=product,
    )
    lose(proxy, lost, f"wallets/u1/ledger/{request.ledger_entry_id}")

    run_tasks(changes.approve, request.pk, actor=approver, gateway=product)

    was_lost(proxy)
    request.refresh_from_db()
    assert request.state == RequestState.APPLIED
    assert books(direct, "u1")["u1"] == (65, [25, 40])


def test_a_correction_whose_commit_answer_is_lost_is_appended_once_and_marked_applied(
    lost, proxy, product, direct, reviewer, approver, run_tasks
):
    direct.write_wallets([("bad", 550, {"e000": {"amount": 430}, "e001": {"amount": "120"}})])
    run = services.run_inline(actor=None, trigger=RunTrigger.COMMAND, gateway=product)
    request = corrections.propose_correction(
        run.violations.get(), actor=reviewer, entry_id="e001", amount=120, reason="text", gateway=product
    )
    lose(proxy, lost, f"wallets/bad/ledger/{request.ledger_entry_id}")

    run_tasks(changes.approve, request.pk, actor=approver, gateway=product)

    was_lost(proxy)
    request.refresh_from_db()
    assert request.state == RequestState.APPLIED
    ledger = dict(direct.ledgers(["bad"], concurrency=1)["bad"])
    assert sorted(ledger) == ["e000", "e001", request.ledger_entry_id]
    assert ledger["e001"] == {"amount": "120"}  # untouched, superseded
    assert services.run_inline(actor=None, trigger=RunTrigger.COMMAND, gateway=product).violations_count == 0


# -- settlement actions ------------------------------------------------------------


@pytest.fixture
def settlement_run(product, direct, tmp_path, settings):
    """A settled statement against u1 and u3: pay_miss stored but never
    applied (missing in the ledger, replayable), refund re_1 of pay_ref settled
    and never applied (unreversed), pay_pts credited 50 and settled at 60
    (points mismatch)."""
    settings.MEDIA_ROOT = tmp_path / "kept"  # uploads kept for the workers
    put_wallets(direct, {"u1": (0, []), "u3": (0, [])})
    for line in (
        event_line("evt_pts", payment="pay_pts", points=50),
        event_line("evt_ref", user="u3", payment="pay_ref", points=200),
    ):
        assert apply_delivery(stored_event_of(line).pk, gateway=product).status == EventStatus.APPLIED
    stored_event("evt_miss", payment="pay_miss", points=80)
    statement = tmp_path / "statement.csv"
    settled = "2026-11-25T10:00:00+00:00"
    header = ["type", "payment_id", "reference", "user_id", "points", "amount", "currency", "status"]
    with statement.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow([*header, "settled_at"])
        writer.writerow(["payment", "pay_pts", "", "u1", 60, "6.00", "EUR", "settled", settled])
        writer.writerow(["payment", "pay_miss", "", "u1", 80, "8.00", "EUR", "settled", settled])
        writer.writerow(["payment", "pay_ref", "", "u3", 200, "20.00", "EUR", "settled", settled])
        writer.writerow(["refund", "pay_ref", "re_1", "u3", 50, "-5.00", "EUR", "settled", settled])
    call_command("reconcile_settlement", str(statement), stdout=io.StringIO())
    return SettlementRun.objects.get()


SETTLEMENT_ACTIONS = {
    # action: (the rows it closes, the document its commit writes, the books after)
    "replay_missing": (
        Outcome.MISSING_IN_LEDGER,
        "wallets/u1/ledger/purchase-pay_miss",
        {"u1": (130, [50, 80]), "u3": (200, [200])},
    ),
    "propose_reversals": (
        Outcome.UNREVERSED,
        "wallets/u3/ledger/refund-re_1",
        {"u1": (50, [50]), "u3": (150, [-50, 200])},
    ),
    "propose_adjustments": (Outcome.POINTS_MISMATCH, None, {"u1": (60, [10, 50]), "u3": (200, [200])}),
}


@pytest.mark.parametrize("action", SETTLEMENT_ACTIONS)
def test_a_settlement_action_whose_commit_answer_is_lost_closes_its_break_once(
    action, lost, proxy, product, direct, settlement_run, ops, reviewer, approver, run_tasks
):
    outcome, document, after = SETTLEMENT_ACTIONS[action]
    rows = list(SettlementRow.objects.filter(run=settlement_run, outcome=outcome))
    assert len(rows) == 1, list(SettlementRow.objects.values_list("payment_id", "outcome"))

    if action == "propose_adjustments":
        [request] = actions.propose_adjustments(rows, actor=reviewer, reason="statement", gateway=product)
        lose(proxy, lost, f"wallets/u1/ledger/{request.ledger_entry_id}")
        run_tasks(changes.approve, request.pk, actor=approver, gateway=product)
        request.refresh_from_db()
        assert request.state == RequestState.APPLIED
    else:
        plan = run_tasks(getattr(actions, action), rows, actor=ops)
        plan.refresh_from_db()
        assert (plan.dry_run, plan.status, plan.applied) == (True, "completed", 1)
        lose(proxy, lost, document)
        plan_approval.approve_plan(plan.pk, actor=approver, reason="one payment, as the statement says")
        real = run_tasks(run_requests.request_bound_run, plan.pk, actor=ops)
        real.refresh_from_db()
        assert (real.status, real.error) == ("completed", "")
        assert (real.applied, real.failed, real.duplicate) == (1, 0, 0)

    was_lost(proxy)
    assert books(direct, "u1", "u3") == after
    assert not BalanceRequest.objects.exclude(state=RequestState.APPLIED).exists()


# -- snapshot restore --------------------------------------------------------------


@pytest.mark.parametrize("replace", [False, True], ids=["into-empty", "replacing"])
def test_a_restore_whose_commit_answer_is_lost_writes_the_snapshot_exactly_and_records_it(
    replace,
    lost,
    proxy,
    product,
    direct,
    firestore_project,
    firestore_emulator,
    tmp_path,
    settings,
    monkeypatch,
):
    put_wallets(direct, {"u1": (10, [10]), "u2": (5, [2, 3])})
    direct.put_config("adjustments", {"frozen": True})
    snapshots.take(tmp_path / "snap", actor=None, gateway=direct)
    target = "target-" + firestore_project.removeprefix("test-")
    settings.RESTORE_ALLOWED_PROJECTS = [target]
    there = gateway_at(firestore_emulator, target, monkeypatch)
    if replace:
        put_wallets(there, {"u1": (99, [99]), "u3": (1, [1])})
    lose(proxy, lost, "wallets/u2/ledger/e001")

    restore = snapshots.restore(tmp_path / "snap", project=target, replace=replace)

    was_lost(proxy)
    assert (restore.error, restore.written) == ("", 6)  # 2 wallets, 3 entries, 1 config
    assert books(there, "u1", "u2") == {"u1": (10, [10]), "u2": (5, [2, 3])}
    assert not firestore_client(there.project).collection("wallets").document("u3").get().exists
    assert there.get_config("adjustments") == {"frozen": True}
