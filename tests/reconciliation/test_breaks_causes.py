"""Each probable cause, from a wallet and a ledger built to show it, through a
real run; and an unexplained one that says so."""

import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.test import TestCase
from django.urls import reverse
from django.utils import timezone

from backfill import file_replay, run_requests
from backfill.services import apply_delivery
from reconciliation import break_cause_batches, break_causes, changes, recovery, services
from reconciliation.models import Break, RequestState, RunTrigger
from tests.helpers import event_line, firestore_client, stored_event

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def reconcile(gateway, uids=None):
    """A run, and the task it enqueues after its commit (the probable causes)."""
    with TestCase.captureOnCommitCallbacks(execute=True):
        return services.run_inline(actor=None, trigger=RunTrigger.COMMAND, gateway=gateway, uids=uids)


def dated(*amounts, prefix="e"):
    """A ledger whose entries were written an hour apart, in order."""
    return {
        f"{prefix}{n:03d}": {"type": "purchase", "amount": amount, "createdAt": T0 + timedelta(hours=n)}
        for n, amount in enumerate(amounts)
    }


def sweep(gateway):
    """The minute's sweep, and the tasks it hands out run as a worker would."""
    with TestCase.captureOnCommitCallbacks(execute=True):
        return recovery.sweep(gateway=gateway)


def cause_of(gateway, points, ledger, uid="w1"):
    gateway.write_wallets([(uid, points, ledger)])
    reconcile(gateway, uids=[uid])
    return Break.objects.get(uid=uid)


def cause_of_existing(gateway, uid="w1"):
    reconcile(gateway, uids=[uid])
    return Break.objects.filter(uid=uid).latest("pk")


@pytest.fixture
def run_tasks(django_capture_on_commit_callbacks):
    def run(func, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return func(*args, **kwargs)

    return run


@pytest.mark.django_db
def test_a_wallet_that_missed_its_latest_entry(gateway):
    brk = cause_of(gateway, 150, dated(100, 50, 20))

    assert brk.cause == "missed_entries"
    assert brk.cause_text == "The wallet missed entry e002 (+20, 1 Nov 2026, 11:00 UTC) of 3"
    assert [e["id"] for e in brk.cause_evidence["entries"]] == ["e002"]
    assert brk.cause_evidence["entries"][0]["created_at"] == "2026-11-01T11:00:00+00:00"
    assert (brk.cause_evidence["wallet_points"], brk.cause_evidence["ledger_sum"]) == (150, 170)


@pytest.mark.django_db
def test_a_wallet_that_missed_its_latest_entries(gateway):
    brk = cause_of(gateway, 100, dated(100, 50, 20))

    assert brk.cause == "missed_entries"
    assert brk.cause_text.startswith("The wallet missed its latest 2 entries: e002 (+20, ")
    assert "e001 (+50, 1 Nov 2026, 10:00 UTC) of 3" in brk.cause_text


@pytest.mark.django_db
def test_an_entry_too_many_in_the_wallet(gateway):
    brk = cause_of(gateway, 140, dated(100, 30, -20))

    assert brk.cause == "extra_in_wallet"
    assert brk.cause_text == (
        "Entry e001 (+30, 1 Nov 2026, 10:00 UTC) is missing from the ledger "
        "or was counted twice in the wallet"
    )


@pytest.mark.django_db
def test_a_sign_applied_the_wrong_way(gateway):
    brk = cause_of(gateway, 130, dated(100, -30, 5, -5))

    assert brk.cause == "wrong_sign"
    assert brk.cause_text == "Sign of entry e001 (\u221230, 1 Nov 2026, 10:00 UTC) applied the wrong way"


@pytest.mark.django_db
def test_a_malformed_amount(gateway):
    ledger = dated(100, 25)
    ledger["e001"]["amount"] = "25"

    brk = cause_of(gateway, 125, ledger)

    assert (brk.kind, brk.cause) == ("malformed", "malformed_amount")
    assert (
        brk.cause_text == "Entry e001: amount is a string ('25'); read as a number it explains the whole +25"
    )
    assert brk.cause_evidence["entries"][0]["amount"] == "25"
    assert (brk.cause_evidence["delta"], brk.cause_evidence["explains"]) == (25, 25)


def test_a_malformed_amount_says_how_much_of_the_delta_it_explains():
    """Issue 25: the demo's oldest break (+550) named one entry of "120" without
    saying that it explains 120 of the 550."""
    entries = [*dated(100, 30).items(), ("bad", {"amount": "120", "createdAt": T0})]

    cause = break_causes.probable_cause(680, entries)

    assert cause.code == "malformed_amount"
    assert (
        cause.text == "Entry bad: amount is a string ('120'); read as a number it explains +120 of the +550"
    )
    assert (cause.evidence["delta"], cause.evidence["explains"]) == (550, 120)

    cause = break_causes.probable_cause(130, [*dated(100, 30).items(), ("bad", {"amount": "ten"})])
    assert cause.text == "Entry bad: amount is a string ('ten'); not a number, so it explains none of the 0"
    assert cause.evidence["explains"] == 0


def test_an_event_written_twice_to_the_ledger():
    ledger = dated(100, 40)
    ledger["e002"] = {**ledger["e001"], "createdAt": T0 + timedelta(hours=5)}  # the same payment again
    ledger["e001"]["eventId"] = ledger["e002"]["eventId"] = "evt_7"

    cause = break_causes.probable_cause(140, list(ledger.items()))

    assert cause.code == "duplicated_entry"
    assert cause.text.startswith("Entry e002 (+40, 1 Nov 2026, 14:00 UTC) repeats e001, the same event")
    assert [e["id"] for e in cause.evidence["entries"]] == ["e002"]
    assert cause.evidence["explains"] == cause.evidence["delta"] == -40


def test_two_entries_missed_or_counted_twice_anywhere_among_the_latest():
    # Not the latest two: the 2nd and 4th newest.
    ledger = dated(500, 7, 11, 13, 17, 19)

    missed = break_causes.probable_cause(567 - 7 - 13, list(ledger.items()))
    assert missed.code == "missed_entries"
    assert missed.text.startswith("The wallet missed two entries: e003 (+13, ")
    assert [e["id"] for e in missed.evidence["entries"]] == ["e003", "e001"]
    assert missed.evidence["explains"] == -20

    extra = break_causes.probable_cause(567 + 7 + 13, list(ledger.items()))
    assert extra.code == "extra_in_wallet"
    assert extra.text.startswith("Entries e003 (+13, ")
    assert "are missing from the ledger or were counted twice in the wallet" in extra.text
    assert extra.evidence["explains"] == 20


@pytest.mark.django_db
def test_malformed_wallet_points(gateway):
    brk = cause_of(gateway, "120", dated(100, 20))

    assert brk.cause == "malformed_amount"
    assert brk.cause_text == "The wallet's points are a string ('120')"


@pytest.mark.django_db
def test_an_entry_written_by_our_replay_is_named_with_its_migration(gateway):
    gateway.write_wallets([("w1", 100, dated(100))])
    migration = run_requests.start_replay(path="export.jsonl", dry_run=False)
    file_replay.run_replay(
        migration, [event_line("evt_1", user="w1", payment="pay_1", points=40)], gateway=gateway
    )
    delivery = migration.deliveries.get()
    # The points app overwrites the wallet with the balance it held before the credit.
    firestore_client(gateway.project).collection("wallets").document("w1").update({"points": 100})

    brk = cause_of_existing(gateway)

    assert brk.cause == "missed_entries"
    assert f"written by migration {migration.pk} (Replay, delivery {delivery.pk})" in brk.cause_text
    assert brk.cause_evidence["entries"][0]["written_by"] == (
        f"written by migration {migration.pk} (Replay, delivery {delivery.pk})"
    )


@pytest.mark.django_db
def test_a_reversal_applied_from_a_webhook_is_named_with_its_delivery(gateway):
    gateway.write_wallets([("w1", 0, {})])
    payment = stored_event("evt_p", user="w1", payment="pay_9", points=100)
    refund = stored_event(
        "evt_r", "payment.refunded", user="w1", payment="pay_9", points=30, refund_id="re_9"
    )
    for delivery in (payment, refund):
        apply_delivery(delivery.pk, gateway=gateway)
    # The points app puts back the balance it held before the refund (100, not 70).
    firestore_client(gateway.project).collection("wallets").document("w1").update({"points": 100})

    brk = cause_of_existing(gateway)

    assert brk.cause == "missed_entries"
    assert f"written by webhook (reversal, delivery {refund.pk})" in brk.cause_text


@pytest.mark.django_db
def test_entries_of_ours_are_named_when_no_single_entry_explains_the_delta(
    gateway, reviewer, approver, run_tasks
):
    gateway.write_wallets([("w1", 100, dated(60, 40))])
    request = changes.propose_adjustment(
        actor=reviewer, uid="w1", amount=25, reason_code="goodwill", reason="late parcel", gateway=gateway
    )
    run_tasks(changes.approve, request.pk, actor=approver, gateway=gateway)
    request.refresh_from_db()
    assert request.state == RequestState.APPLIED
    firestore_client(gateway.project).collection("wallets").document("w1").update({"points": 132})

    brk = cause_of_existing(gateway)

    assert brk.cause == "our_entry"
    assert brk.cause_text.startswith("No entry explains a delta of +7; entries of ours in the ledger: ")
    assert f"revassure-adjustment-{request.pk} (+25, " in brk.cause_text
    assert f"written by request {request.pk} (manual adjustment)" in brk.cause_text


@pytest.mark.django_db
def test_a_rebalance_of_ours_is_named_when_nothing_else_explains_the_delta(
    gateway, reviewer, approver, run_tasks
):
    gateway.write_wallets([("w1", 130, dated(60, 40))])
    first = reconcile(gateway, uids=["w1"])
    [heal] = changes.propose_heals(
        [first.violations.get()], actor=reviewer, strategy="rebalance", reason="x", gateway=gateway
    )
    run_tasks(changes.approve, heal.pk, actor=approver, gateway=gateway)
    reconcile(gateway, uids=["w1"])  # clean: the first break closes as healed
    firestore_client(gateway.project).collection("wallets").document("w1").update({"points": 107})

    brk = cause_of_existing(gateway)  # the second break

    assert brk.cause == "our_entry"
    assert f"points were last set by request {heal.pk} (heal, rebalance) at " in brk.cause_text
    assert brk.cause_evidence["last_rebalance"]["audit_log_id"] == f"revassure-heal-{heal.pk}"


@pytest.mark.django_db
def test_an_unexplained_difference_says_so(gateway):
    brk = cause_of(gateway, 157, dated(100, 50))

    assert brk.cause == "unexplained"
    assert brk.cause_text == (
        "Unexplained: no entry, pair of entries or run of latest entries accounts for a delta of "
        "+7 (2 entries read)"
    )
    assert brk.cause_evidence["delta"] == 7


@pytest.mark.django_db
def test_a_ledger_beyond_the_bound_is_not_read(gateway, settings):
    settings.BREAK_CAUSE_MAX_ENTRIES = 2

    brk = cause_of(gateway, 150, dated(100, 50, 20))

    assert brk.cause == "unexplained"
    assert brk.cause_text == "Not examined: the ledger has 3 entries, more than BREAK_CAUSE_MAX_ENTRIES (2)"


@pytest.mark.django_db
def test_the_cause_is_computed_when_the_break_opens_not_at_each_sighting(gateway):
    brk = cause_of(gateway, 150, dated(100, 50, 20))
    firestore_client(gateway.project).collection("wallets").document("w1").update({"points": 157})

    reconcile(gateway, uids=["w1"])

    again = Break.objects.get(pk=brk.pk)
    assert (again.delta, again.sightings_count) == (-13, 2)
    assert (again.cause, again.cause_text) == (brk.cause, brk.cause_text)


@pytest.mark.django_db
def test_a_cause_whose_task_was_lost_is_computed_after_the_next_run(gateway):
    gateway.write_wallets([("w1", 150, dated(100, 50, 20)), ("w2", 3, dated(1))])
    # The run's commit callbacks never run: the causes task is lost with its worker.
    services.run_inline(actor=None, trigger=RunTrigger.COMMAND, gateway=gateway, uids=["w1"])
    assert (Break.objects.get(uid="w1").cause, Break.objects.get(uid="w1").cause_text) == ("", "")

    reconcile(gateway, uids=["w2"])

    assert Break.objects.get(uid="w1").cause == "missed_entries"
    assert Break.objects.get(uid="w2").cause != ""


@pytest.mark.django_db
def test_a_cause_whose_task_was_lost_is_computed_by_the_sweep_once(gateway, settings):
    gateway.write_wallets([("w1", 150, dated(100, 50, 20)), ("w2", 3, dated(1))])
    # The run's commit callbacks never run: the causes task is lost with its worker.
    services.run_inline(actor=None, trigger=RunTrigger.COMMAND, gateway=gateway, uids=["w1", "w2"])
    assert sweep(gateway)["causes_handed_out"] == 0  # opened just now: its task may still come
    a_while_ago = timezone.now() - timedelta(seconds=2 * settings.RECONCILE_LEASE_SECONDS)
    Break.objects.update(created_at=a_while_ago)
    # A live worker computes w2's cause: it is its own.
    Break.objects.filter(uid="w2").update(
        cause_claim="live", cause_lease_until=timezone.now() + timedelta(hours=1)
    )

    assert sweep(gateway)["causes_handed_out"] == 1

    assert list(Break.objects.order_by("uid").values_list("uid", "cause")) == [
        ("w1", "missed_entries"),
        ("w2", ""),
    ]
    # The lost task arrives after all, and the sweep runs again: nothing is computed twice.
    assert break_cause_batches.fill_causes(gateway=gateway) == 0
    assert sweep(gateway)["causes_handed_out"] == 0
    # The live worker died: its break is handed out once its lease lapses.
    Break.objects.filter(uid="w2").update(cause_lease_until=a_while_ago)
    assert sweep(gateway)["causes_handed_out"] == 1
    assert Break.objects.get(uid="w2").cause != ""


def test_entries_without_a_time_count_as_the_oldest():
    entries = [
        ("b-undated", {"amount": 7}),
        ("a-dated", {"amount": 20, "createdAt": T0}),
    ]

    cause = break_causes.probable_cause(0, entries)

    assert cause.code == "missed_entries"
    assert cause.text.startswith("The wallet missed its latest 2 entries: a-dated (+20, ")
    assert "b-undated (+7, no createdAt)" in cause.text


def breaks_json() -> dict:
    out = io.StringIO()
    call_command("breaks", "--json", stdout=out)
    return {b["uid"]: b for b in json.loads(out.getvalue())["breaks"]}


@pytest.mark.django_db
def test_breaks_json_carries_each_causes_entries_and_how_much_of_the_delta_they_explain(gateway):
    """Issue 27 item 9: `cause` is the cause with its evidence, not a bare code."""
    gateway.write_wallets(
        [
            ("missed", 100, dated(100, 50, 20)),
            ("sign", 130, dated(100, -30, 5, -5, prefix="s")),
            ("odd", 1000, dated(100, 50)),
        ]
    )
    reconcile(gateway, uids=["missed", "sign", "odd"])

    found = breaks_json()

    assert found["missed"]["cause"] == {
        "code": "missed_entries",
        "summary": Break.objects.get(uid="missed").cause_text,
        "entries": [
            {
                "id": "e002",
                "amount": 20,
                "created_at": "2026-11-01T11:00:00+00:00",
                "type": "purchase",
                "written_by": "",
            },
            {
                "id": "e001",
                "amount": 50,
                "created_at": "2026-11-01T10:00:00+00:00",
                "type": "purchase",
                "written_by": "",
            },
        ],
        "explains": -70,
        "delta": -70,
    }
    sign = found["sign"]["cause"]
    assert (sign["code"], [e["id"] for e in sign["entries"]]) == ("wrong_sign", ["s001"])
    assert (sign["entries"][0]["amount"], sign["explains"], sign["delta"]) == (-30, 60, 60)
    odd = found["odd"]["cause"]
    assert (odd["code"], odd["entries"], odd["explains"], odd["delta"]) == ("unexplained", [], 0, 850)


@pytest.mark.django_db
def test_breaks_json_gives_no_cause_until_it_is_computed_and_what_a_malformed_one_explains(gateway):
    gateway.write_wallets([("bad", 10, {"e1": {"type": "purchase", "amount": "10"}})])
    services.run_inline(actor=None, trigger=RunTrigger.COMMAND, gateway=gateway, uids=["bad"])
    assert breaks_json()["bad"]["cause"] is None  # the task has not run

    break_cause_batches.fill_causes(gateway=gateway)

    cause = breaks_json()["bad"]["cause"]
    assert (cause["code"], cause["explains"], cause["delta"]) == ("malformed_amount", 10, 10)
    assert [(e["id"], e["amount"]) for e in cause["entries"]] == [("e1", "10")]


@pytest.mark.django_db
def test_the_breaks_list_says_what_share_of_the_open_breaks_each_cause_explains(gateway, client, reviewer):
    gateway.write_wallets(
        [
            ("m1", 150, dated(100, 50, 20)),  # missed its latest entry: -20
            ("m2", 100, dated(100, 50, 20)),  # missed its latest 2: -70
            ("s1", 130, dated(100, -30, 5, -5, prefix="s")),  # wrong sign: +60
            ("odd", 1000, dated(100, 50)),  # unexplained: +850
        ]
    )
    reconcile(gateway, uids=["m1", "m2", "s1", "odd"])

    found = break_causes.shares()

    assert found["open"] == 4
    assert [(c["code"], c["breaks"], c["share"], c["at_stake"]) for c in found["causes"]] == [
        ("missed_entries", 2, 50, 90),
        ("unexplained", 1, 25, 850),
        ("wrong_sign", 1, 25, 60),
    ]
    client.force_login(reviewer)
    shown = client.get(reverse("admin:reconciliation_break_changelist")).content.decode()
    assert "What explains the 4 open breaks:" in shown
    assert "Wallet missed its latest entries</a> 2 (50%, 90 points at stake)" in shown
    assert 'href="?cause=wrong_sign&amp;status=not_closed"' in shown
