"""Corrections of malformed ledger entries (issue 25): a correcting entry,
proposed by one person and approved by another, supersedes the malformed one;
the ledger stays append-only, the two are linked, and reconciliation counts
them as the correction says. Real emulator, real database."""

import re

import pytest
from django.contrib.auth.models import Group
from django.db import IntegrityError, transaction
from django.test import TestCase

from reconciliation import (
    break_actions,
    break_causes,
    breaks,
    changes,
    corrections,
    effects,
    execution,
    services,
    wallet_checks,
)
from reconciliation.models import BalanceRequest, Break, BreakAction, RequestState, RunTrigger
from revassure import freeze, ledger
from revassure.firestore import MISSING
from revassure.ledger import superseded_entries
from revassure.roles import APPROVER
from tests.helpers import command_json, firestore_client

pytestmark = pytest.mark.django_db


def reconcile(gateway):
    """A run, with what it enqueues after commit (the break causes) run too."""
    with TestCase.captureOnCommitCallbacks(execute=True):
        return services.run_inline(actor=None, trigger=RunTrigger.COMMAND, gateway=gateway)


def entry(gateway, uid, entry_id):
    snap = (
        firestore_client(gateway.project)
        .collection("wallets")
        .document(uid)
        .collection("ledger")
        .document(entry_id)
        .get()
    )
    return snap.to_dict() if snap.exists else None


def wallet_points(gateway, uid):
    return firestore_client(gateway.project).collection("wallets").document(uid).get().to_dict()["points"]


def the_break(uid="bad") -> Break:
    return Break.objects.get(uid=uid)


@pytest.fixture
def run_tasks(django_capture_on_commit_callbacks):
    def run(func, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return func(*args, **kwargs)

    return run


@pytest.fixture
def malformed(gateway):
    """550 points; a purchase of 430 and an entry of "120" (a string the sum skips):
    the violation of the first run, malformed, +120."""
    gateway.write_wallets(
        [
            (
                "bad",
                550,
                {"e000": {"type": "purchase", "amount": 430}, "e001": {"type": "purchase", "amount": "120"}},
            ),
            ("ok", 5, {"e000": {"type": "purchase", "amount": 5}}),
        ]
    )
    return reconcile(gateway).violations.get(uid="bad")


def propose(violation, actor, gateway, *, entry_id="e001", amount=120, reason="the app wrote 120 as text"):
    return corrections.propose_correction(
        violation, actor=actor, entry_id=entry_id, amount=amount, reason=reason, gateway=gateway
    )


# -- the path of a malformed entry ---------------------------------------------------


def test_a_correction_supersedes_the_malformed_entry_and_the_next_run_closes_the_break_as_healed(
    gateway, malformed, reviewer, approver, run_tasks
):
    assert (malformed.kind, malformed.delta) == ("malformed", 120)
    assert corrections.correction_refusal(malformed) == ""

    request = propose(malformed, reviewer, gateway)

    assert (request.kind, request.state, request.amount, request.supersedes) == (
        "correction",
        "proposed",
        120,
        "e001",
    )
    assert (request.violation, request.expected_points, request.expected_ledger_sum) == (malformed, 550, 430)
    assert request.ledger_entry_id == f"revassure-correction-{request.pk}"
    assert effects.request_effect(request) == effects.Effect(550, 550, 430, 550)

    run_tasks(changes.approve, request.pk, actor=approver, gateway=gateway, reason="read the receipt")

    request.refresh_from_db()
    assert request.state == RequestState.APPLIED
    written = entry(gateway, "bad", request.ledger_entry_id)
    assert {
        k: written[k] for k in ("type", "supersedes", "amount", "requestId", "proposedBy", "approvedBy")
    } == {
        "type": "correction",
        "supersedes": "e001",
        "amount": 120,
        "requestId": request.pk,
        "proposedBy": "alice",
        "approvedBy": ["bob"],
    }
    assert written["reason"] == "the app wrote 120 as text" and written["reasonCode"] == "correction"
    # Append-only: the malformed entry is as it was, the wallet's points too.
    assert entry(gateway, "bad", "e001") == {"type": "purchase", "amount": "120"}
    assert wallet_points(gateway, "bad") == 550
    assert request.result["entry_id"] == request.ledger_entry_id

    run = reconcile(gateway)

    assert run.violations_count == 0 and run.malformed_count == 0
    brk = the_break()
    assert (brk.status, brk.resolution, brk.heal_request) == ("closed", "healed", request)
    assert brk.notes.last().text == f"Closed by run {run.pk}: healed by correction #{request.pk}."


def test_classify_counts_a_superseded_entry_as_its_correction_says_and_still_reports_another_malformed_one():
    entries = [
        ("e1", {"amount": 100}),
        ("e2", {"amount": "20"}),
        ("fix", {"amount": 20, "supersedes": "e2", "type": "correction"}),
    ]
    # clean: the correction stands for e2
    assert wallet_checks.classify("w", 120, entries, exists=True) is None
    assert wallet_checks.classify("w", 120, [*entries[:2]], exists=True)["kind"] == "malformed"

    found = wallet_checks.classify("w", 120, [*entries, ("e3", {"amount": None})], exists=True)

    assert (found["kind"], found["ledger_sum"], found["delta"]) == ("malformed", 120, 0)
    assert found["details"]["malformed_entries"] == [
        {"entry": "e3", "amount": "NoneType None", "problem": "not a number"}
    ]
    assert found["details"]["corrected_entries"] == [
        {"entry": "e2", "amount": "str '20'", "corrected_by": "fix"}
    ]
    # A double is in Firestore's sum already: naming it does not take it out, it stays malformed.
    doubled = wallet_checks.classify(
        "w",
        120,
        [("e1", {"amount": 100}), ("e2", {"amount": 20.5}), ("fix", {"amount": 20, "supersedes": "e2"})],
        exists=True,
    )
    assert [m["entry"] for m in doubled["details"]["malformed_entries"]] == ["e2"]


def test_only_a_whole_entry_naming_an_entry_the_sum_skips_supersedes_it():
    entries = [
        ("a", {"amount": "5"}),
        ("b", {}),  # no amount at all
        ("c", {"amount": True}),
        ("d", {"amount": 7}),
        ("fix-a", {"amount": 5, "supersedes": "a"}),
        ("fix-b", {"amount": 0, "supersedes": "b"}),
        ("fix-c", {"amount": "1", "supersedes": "c"}),  # not whole points itself
        ("fix-d", {"amount": 7, "supersedes": "d"}),  # d is counted: nothing to supersede
        ("fix-x", {"amount": 1, "supersedes": "nowhere"}),
    ]
    assert superseded_entries(entries) == {"a": "fix-a", "b": "fix-b"}


def test_the_probable_cause_does_not_call_a_superseded_entry_malformed_and_links_it():
    entries = [
        ("e1", {"amount": 100}),
        ("e2", {"amount": "20"}),
        ("fix", {"amount": 20, "supersedes": "e2", "type": "correction"}),
    ]

    cause = break_causes.probable_cause(150, entries)

    assert cause.code != "malformed_amount"
    assert cause.evidence["delta"] == 30 and cause.evidence["ledger_sum"] == 120
    assert cause.evidence["corrections"] == [
        {"entry": "e2", "amount": "20", "corrected_by": "fix", "by_amount": 20}
    ]
    still = break_causes.probable_cause(150, [*entries, ("e3", {"amount": "30"})])
    assert still.code == "malformed_amount" and still.text.startswith("Entry e3: amount is a string")


def test_a_partial_correction_leaves_a_drift_whose_cause_is_read_again_with_the_link(
    gateway, reviewer, approver, run_tasks
):
    """550 points over 430 and "20": the correction explains 20 of the 120; the
    break stays open, now a drift of +100, with its cause computed again."""
    gateway.write_wallets(
        [("bad", 550, {"e000": {"type": "purchase", "amount": 430}, "e001": {"amount": "20"}})]
    )
    violation = reconcile(gateway).violations.get()
    assert the_break().cause == "malformed_amount"
    request = propose(violation, reviewer, gateway, amount=20)
    run_tasks(changes.approve, request.pk, actor=approver, gateway=gateway)

    again = reconcile(gateway).violations.get()

    assert (again.kind, again.delta) == ("drift", 100)
    assert again.details["corrected_entries"][0]["corrected_by"] == request.ledger_entry_id
    brk = the_break()
    assert (brk.status, brk.kind, brk.delta) == ("open", "drift", 100)
    assert brk.cause != "malformed_amount"
    # Its own correction is not blamed for what is left (the demo said "an
    # entry written by revassure" of the correction it had just made).
    assert brk.cause != "our_entry"
    assert request.ledger_entry_id not in brk.cause_text
    assert brk.cause_evidence["corrections"] == [
        {"entry": "e001", "amount": "20", "corrected_by": request.ledger_entry_id, "by_amount": 20}
    ]
    # What is left is a drift: a heal can be proposed for it now.
    assert break_actions.refusal(brk, reviewer, BreakAction.PROPOSE_HEAL) == ""
    assert break_actions.refusal(brk, reviewer, BreakAction.PROPOSE_CORRECTION).startswith(
        "nothing is malformed"
    )


# -- refusals --------------------------------------------------------------------------


def test_a_second_correction_of_the_same_entry_is_refused_naming_the_first(
    gateway, malformed, reviewer, approver, run_tasks
):
    first = propose(malformed, reviewer, gateway)
    with pytest.raises(changes.RequestRefused) as refused:
        propose(malformed, reviewer, gateway, amount=12)
    assert str(refused.value) == (
        f"entry e001 already has correction #{first.pk} (proposed, +120 points): one correction per entry"
    )

    run_tasks(changes.approve, first.pk, actor=approver, gateway=gateway)
    with pytest.raises(changes.RequestRefused, match=f"correction #{first.pk} \\(applied"):
        propose(malformed, reviewer, gateway)
    assert BalanceRequest.objects.count() == 1


def test_a_rejected_correction_leaves_the_entry_open_to_another(gateway, malformed, reviewer, approver):
    first = propose(malformed, reviewer, gateway)
    changes.reject(first.pk, actor=approver, reason="it was 12, not 120")
    second = propose(malformed, reviewer, gateway, amount=12)
    assert (second.state, second.amount) == ("proposed", 12)


def test_a_double_amount_is_refused_with_the_reason(gateway, reviewer):
    gateway.write_wallets([("half", 550, {"e000": {"amount": 430}, "e001": {"amount": 120.5}})])
    violation = reconcile(gateway).violations.get()
    assert violation.kind == "malformed"

    refusal = corrections.correction_refusal(violation)
    assert refusal == (
        "entry e001 holds float 120.5: Firestore's sum counts it already, so a correcting entry would "
        "count beside it; accept the difference with a reason instead"
    )
    with pytest.raises(changes.RequestRefused, match="Firestore's sum counts it already"):
        propose(violation, reviewer, gateway, amount=120)
    assert not BalanceRequest.objects.exists()


@pytest.mark.parametrize(
    ("entry_id", "amount", "refusal"),
    [
        ("e000", 430, "entry e000 holds +430 points, whole: nothing to correct"),
        ("gone", 1, "there is no entry gone in the ledger of bad"),
        ("", 1, "name the malformed ledger entry to correct"),
        ("e001", "120", "the corrected amount must be a whole number of points"),
        ("e001", 1.5, "the corrected amount must be a whole number of points"),
        ("e001", True, "the corrected amount must be a whole number of points"),
        ("e001", 2**63, "beyond a 64-bit ledger amount"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_proposed(
    gateway, malformed, reviewer, entry_id, amount, refusal
):
    with pytest.raises(changes.RequestRefused, match=re.escape(refusal)):
        propose(malformed, reviewer, gateway, entry_id=entry_id, amount=amount)
    with pytest.raises(changes.RequestRefused, match="a reason is required"):
        propose(malformed, reviewer, gateway, reason="  ")
    assert not BalanceRequest.objects.exists()


def test_a_wallet_that_moved_since_the_run_is_refused(gateway, malformed, reviewer):
    gateway.append_entry("bad", "late", {"amount": 3, "type": "purchase"})
    with pytest.raises(changes.RequestRefused, match="bad changed since run .*run reconciliation again"):
        propose(malformed, reviewer, gateway)


def test_who_may_propose_and_when(gateway, malformed, reviewer, outsider, approver, ops):
    for person in (outsider, approver):
        with pytest.raises(PermissionError):
            propose(malformed, person, gateway)
    freeze.freeze(actor=ops, reason="cutover", gateway=gateway)
    with pytest.raises(freeze.Frozen):
        propose(malformed, reviewer, gateway)
    assert break_actions.refusal(the_break(), reviewer, BreakAction.PROPOSE_CORRECTION).startswith(
        "manual balance changes are frozen"
    )
    assert not BalanceRequest.objects.exists()


def test_what_cannot_be_corrected_says_why(gateway, reviewer):
    gateway.write_wallets(
        [
            ("drift", 130, {"e000": {"amount": 100}}),
            ("points", "550", {"e000": {"amount": 430}}),
        ]
    )
    run = reconcile(gateway)
    assert corrections.correction_refusal(run.violations.get(uid="drift")).startswith("nothing is malformed")
    assert corrections.correction_refusal(run.violations.get(uid="points")).startswith(
        "the wallet's own points are malformed"
    )
    assert corrections.correction_refusal(None) == "no run has seen it yet"


def test_one_open_repair_per_wallet(gateway, reviewer, approver):
    gateway.write_wallets([("two", 600, {"e0": {"amount": 430}, "e1": {"amount": "120"}, "e2": {}})])
    violation = reconcile(gateway).violations.get()
    first = propose(violation, reviewer, gateway, entry_id="e1")
    assert (
        corrections.correction_refusal(violation)
        == f"its wallet already has correction #{first.pk} (proposed)"
    )
    with pytest.raises(changes.RequestRefused, match=f"its wallet already has correction #{first.pk}"):
        propose(violation, reviewer, gateway, entry_id="e2", amount=50)
    brk = the_break("two")
    assert break_actions.refusal(brk, approver, BreakAction.ACCEPT) == (
        f"its wallet has correction #{first.pk} open (proposed): decide the correction first"
    )


# -- maker-checker and applying ---------------------------------------------------------


def test_nobody_approves_their_own_correction(gateway, malformed, reviewer):
    reviewer.groups.add(Group.objects.get(name=APPROVER))
    request = propose(malformed, reviewer, gateway)
    with pytest.raises(changes.RequestRefused, match="someone else must approve"):
        changes.approve(request.pk, actor=reviewer, gateway=gateway)


def test_a_correction_goes_stale_when_the_wallet_or_the_entry_moved_before_approval(
    gateway, malformed, reviewer, approver, run_tasks
):
    request = propose(malformed, reviewer, gateway)
    firestore_client(gateway.project).collection("wallets").document("bad").update({"points": 560})
    run_tasks(changes.approve, request.pk, actor=approver, gateway=gateway)
    request.refresh_from_db()
    assert request.state == RequestState.STALE
    assert entry(gateway, "bad", request.ledger_entry_id) is None

    firestore_client(gateway.project).collection("wallets").document("bad").update({"points": 550})
    again = propose(malformed, reviewer, gateway)
    # The points app fixed the entry itself, to a whole 0: the sum is unchanged, nothing left to correct.
    firestore_client(gateway.project).collection("wallets").document("bad").collection("ledger").document(
        "e001"
    ).update({"amount": 0})
    run_tasks(changes.approve, again.pk, actor=approver, gateway=gateway)
    again.refresh_from_db()
    assert again.state == RequestState.STALE
    assert again.events.last().reason == "entry e001 now holds 0: there is nothing left to correct"


def test_executing_twice_appends_the_correction_once(gateway, malformed, reviewer, approver):
    request = propose(malformed, reviewer, gateway)
    changes.approve(request.pk, actor=approver, gateway=gateway)  # its task not run: executed below

    execution.execute(request.pk, gateway=gateway)
    BalanceRequest.objects.filter(pk=request.pk).update(claimed_at=None)  # as if a second delivery
    execution.execute(request.pk, gateway=gateway)

    request.refresh_from_db()
    assert request.state == RequestState.APPLIED
    ledger = gateway.ledgers(["bad"], concurrency=1)["bad"]
    assert sorted(entry_id for entry_id, _ in ledger) == ["e000", "e001", request.ledger_entry_id]


# -- how the break shows it -------------------------------------------------------------


def test_the_break_proposes_it_with_a_note_and_breaks_json_links_the_entry_and_its_correction(
    gateway, malformed, reviewer, approver, run_tasks
):
    brk = the_break()
    assert break_actions.refusal(brk, reviewer, BreakAction.PROPOSE_CORRECTION) == ""
    assert break_actions.refusal(brk, approver, BreakAction.PROPOSE_CORRECTION) == (
        "your role does not do this to breaks"
    )

    request = break_actions.propose_correction(
        brk.pk, actor=reviewer, entry_id="e001", amount=120, reason="receipt says 120", gateway=gateway
    )

    assert brk.notes.last().action == "correction"
    assert brk.notes.last().text == (
        f"Correction #{request.pk} proposed: entry e001 to count +120 points: receipt says 120"
    )
    run_tasks(changes.approve, request.pk, actor=approver, gateway=gateway)
    reconcile(gateway)

    [shown] = command_json("breaks", "--status", "all")["breaks"]
    assert (shown["resolution"], shown["healed_by"]) == ("healed", request.pk)
    assert shown["corrections"] == [
        {
            "request": request.pk,
            "state": "applied",
            "supersedes": "e001",
            "entry": request.ledger_entry_id,
            "amount": 120,
            "applied_at": BalanceRequest.objects.get(pk=request.pk).applied_at.isoformat(),
        }
    ]
    assert breaks.summary(the_break())["corrections"] == shown["corrections"]


def test_a_missing_amount_is_described_as_people_read_it():
    assert corrections.describe(MISSING) == "missing"
    assert corrections.describe(None) == "null"
    assert corrections.describe("120") == 'a string "120"'
    assert corrections.describe(False) == "a boolean (false)"
    assert ledger.reading(" -5 ") == -5 and ledger.reading("12o") is None


@pytest.mark.parametrize("raw", ["120", None, MISSING, True, {"points": 120}], ids=repr)
def test_each_amount_the_sum_skips_is_corrected_and_the_next_run_finds_the_wallet_clean(
    gateway, reviewer, approver, run_tasks, raw
):
    bad = {"type": "purchase"} if raw is MISSING else {"type": "purchase", "amount": raw}
    gateway.write_wallets([("bad", 550, {"e000": {"amount": 430}, "e001": bad})])
    violation = reconcile(gateway).violations.get()
    assert (violation.kind, violation.ledger_sum) == ("malformed", 430)

    request = propose(violation, reviewer, gateway)
    run_tasks(changes.approve, request.pk, actor=approver, gateway=gateway)

    assert reconcile(gateway).violations_count == 0
    assert the_break().resolution == "healed"


def test_or_an_approver_accepts_the_malformed_break_with_a_reason(gateway, malformed, approver):
    brk = the_break()
    assert break_actions.refusal(brk, approver, BreakAction.ACCEPT) == ""

    break_actions.accept(
        [brk.pk], actor=approver, reason="test entry of the 2019 migration, never a purchase"
    )

    brk.refresh_from_db()
    assert (brk.status, brk.resolution, brk.accepted_delta) == ("closed", "accepted", 120)


def test_the_database_holds_one_standing_correction_per_entry_whatever_code_saves_it(
    gateway, malformed, reviewer
):
    first = propose(malformed, reviewer, gateway)
    fields = {
        "kind": "correction",
        "uid": "bad",
        "amount": 12,
        "reason_code": "correction",
        "reason": "a second one, saved past the service",
        "supersedes": "e001",
        "expected_points": 550,
        "expected_ledger_sum": 430,
        "actor": reviewer,
    }
    with pytest.raises(IntegrityError), transaction.atomic():
        changes.create_request(**fields)
    BalanceRequest.objects.filter(pk=first.pk).update(state=RequestState.REJECTED)
    assert changes.create_request(**fields).supersedes == "e001"  # a rejected one stands no more
