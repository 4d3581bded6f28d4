import threading
from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from reconciliation import changes, execution, request_states, services
from reconciliation.models import BalanceRequest, RequestState, RunTrigger
from revassure import flags, freeze
from revassure.firestore import get_gateway
from revassure.roles import APPROVER
from tests.helpers import firestore_client, put_wallets


def reconcile(gateway):
    return services.run_inline(actor=None, trigger=RunTrigger.COMMAND, gateway=gateway)


def wallet(gateway, uid):
    return firestore_client(gateway.project).collection("wallets").document(uid).get().to_dict()


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


@pytest.fixture
def approver2(db):
    user = User.objects.create_user("dora", "dora@example.com", "password", is_staff=True)
    user.groups.add(Group.objects.get(name=APPROVER))
    return user


@pytest.fixture
def drifted(gateway):
    """A completed run with one drifted wallet: 130 points against a ledger of 120."""
    put_wallets(gateway, {"w1": (130, [100, 20]), "ok": (5, [5])})
    run = reconcile(gateway)
    return run.violations.get(uid="w1")


@pytest.fixture
def run_tasks(django_capture_on_commit_callbacks):
    """Commit callbacks (the task enqueues) run as they would after a real commit."""

    def run(func, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return func(*args, **kwargs)

    return run


# -- heals -------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_rebalance_heal_sets_points_to_the_ledger_sum_with_an_audit_record(
    gateway, drifted, reviewer, approver, run_tasks
):
    [request] = changes.propose_heals(
        [drifted], actor=reviewer, strategy="rebalance", reason="cache bug", gateway=gateway
    )
    assert (request.state, request.amount, request.required_approvals) == ("proposed", -10, 1)

    run_tasks(changes.approve, request.pk, actor=approver, gateway=gateway)

    request.refresh_from_db()
    assert request.state == RequestState.APPLIED
    assert wallet(gateway, "w1")["points"] == 120
    audit = (
        firestore_client(gateway.project)
        .collection("auditLog")
        .document(request.ledger_entry_id)
        .get()
        .to_dict()
    )
    assert audit["before"] == 130 and audit["after"] == 120
    assert audit["proposedBy"] == "alice" and audit["approvedBy"] == ["bob"]
    assert audit["requestId"] == request.pk and audit["reason"] == "cache bug"
    assert list(request.events.values_list("from_state", "to_state")) == [
        ("", "proposed"),
        ("proposed", "approved"),
        ("approved", "applied"),
    ]
    assert reconcile(gateway).violations_count == 0


@pytest.mark.django_db
def test_a_post_adjustment_heal_appends_a_reconciliation_entry(
    gateway, drifted, reviewer, approver, run_tasks
):
    [request] = changes.propose_heals(
        [drifted], actor=reviewer, strategy="post_adjustment", reason="missed purchase", gateway=gateway
    )
    run_tasks(changes.approve, request.pk, actor=approver, gateway=gateway)

    request.refresh_from_db()
    assert request.state == RequestState.APPLIED
    posted = entry(gateway, "w1", request.ledger_entry_id)
    assert (posted["type"], posted["amount"]) == ("reconciliation", 10)
    assert wallet(gateway, "w1")["points"] == 130  # the ledger moved to meet the wallet
    assert reconcile(gateway).violations_count == 0


@pytest.mark.django_db
def test_a_malformed_violation_cannot_be_healed(gateway, reviewer):
    put_wallets(gateway, {"bad": (10, [5, "5"])})
    violation = reconcile(gateway).violations.get()
    with pytest.raises(changes.RequestRefused, match="propose a correction of the malformed entry"):
        changes.propose_heals([violation], actor=reviewer, strategy="rebalance", reason="x", gateway=gateway)


@pytest.mark.django_db
def test_a_heal_is_refused_when_the_wallet_moved_since_the_run(gateway, drifted, reviewer):
    gateway.append_entry("w1", "late", {"amount": 3, "type": "purchase"})
    with pytest.raises(changes.RequestRefused, match="changed since run"):
        changes.propose_heals([drifted], actor=reviewer, strategy="rebalance", reason="x", gateway=gateway)
    assert not BalanceRequest.objects.exists()


@pytest.mark.django_db
def test_a_wallet_gets_one_open_heal_at_a_time(gateway, drifted, reviewer):
    again = reconcile(gateway).violations.get(uid="w1")  # the same drift, found by a later run
    changes.propose_heals([drifted], actor=reviewer, strategy="rebalance", reason="x", gateway=gateway)
    with pytest.raises(changes.RequestRefused, match="already an open heal request for w1"):
        changes.propose_heals(
            [again], actor=reviewer, strategy="post_adjustment", reason="x", gateway=gateway
        )
    assert BalanceRequest.objects.count() == 1


# -- maker-checker -------------------------------------------------------------------


@pytest.mark.django_db
def test_nobody_approves_their_own_request(gateway, drifted, reviewer, approver):
    reviewer.groups.add(Group.objects.get(name=APPROVER))  # even one holding both roles
    [request] = changes.propose_heals(
        [drifted], actor=reviewer, strategy="rebalance", reason="x", gateway=gateway
    )

    with pytest.raises(changes.RequestRefused, match="someone else must approve"):
        changes.approve(request.pk, actor=reviewer, gateway=gateway)
    with pytest.raises(changes.RequestRefused, match="someone else"):
        changes.reject(request.pk, actor=reviewer, reason="mine")
    request.refresh_from_db()
    assert request.state == RequestState.PROPOSED and not request.approvals.exists()


@pytest.mark.django_db
def test_roles_are_checked_in_the_service(gateway, drifted, reviewer, approver, ops, outsider):
    for user in (approver, ops, outsider):
        with pytest.raises(PermissionError):
            changes.propose_heals([drifted], actor=user, strategy="rebalance", reason="x", gateway=gateway)
    [request] = changes.propose_heals(
        [drifted], actor=reviewer, strategy="rebalance", reason="x", gateway=gateway
    )
    for user in (ops, outsider):
        with pytest.raises(PermissionError):
            changes.approve(request.pk, actor=user, gateway=gateway)


@pytest.mark.django_db
def test_the_model_refuses_transitions_outside_the_state_machine(gateway, drifted, reviewer, approver):
    from reconciliation.models import InvalidTransition

    [request] = changes.propose_heals(
        [drifted], actor=reviewer, strategy="rebalance", reason="x", gateway=gateway
    )
    changes.reject(request.pk, actor=approver, reason="no")
    request.refresh_from_db()
    for state in ("approved", "applied", "proposed"):
        request.state = state
        with pytest.raises(InvalidTransition, match=f"a rejected request cannot become {state}"):
            request.save(update_fields=["state"])


@pytest.mark.django_db
def test_a_rejection_needs_a_reason_and_is_recorded(gateway, drifted, reviewer, approver):
    [request] = changes.propose_heals(
        [drifted], actor=reviewer, strategy="rebalance", reason="x", gateway=gateway
    )
    with pytest.raises(changes.RequestRefused, match="reason"):
        changes.reject(request.pk, actor=approver, reason=" ")
    changes.reject(request.pk, actor=approver, reason="ledger is wrong, not the wallet")

    request.refresh_from_db()
    assert request.state == RequestState.REJECTED
    assert request.events.last().reason == "ledger is wrong, not the wallet"
    assert wallet(gateway, "w1")["points"] == 130


@pytest.mark.django_db
def test_above_the_threshold_two_distinct_approvers_are_needed(
    gateway, reviewer, approver, approver2, settings, run_tasks
):
    settings.TWO_APPROVERS_ABOVE = 1000
    put_wallets(gateway, {"vip": (100, [100])})
    request = changes.propose_adjustment(
        actor=reviewer, uid="vip", amount=5000, reason_code="goodwill", reason="outage", gateway=gateway
    )
    assert request.required_approvals == 2

    run_tasks(changes.approve, request.pk, actor=approver, gateway=gateway)
    request.refresh_from_db()
    assert request.state == RequestState.PROPOSED
    with pytest.raises(changes.RequestRefused, match="different approver"):
        changes.approve(request.pk, actor=approver, gateway=gateway)
    run_tasks(changes.approve, request.pk, actor=approver2, gateway=gateway)

    request.refresh_from_db()
    assert request.state == RequestState.APPLIED
    assert wallet(gateway, "vip")["points"] == 5100


@pytest.mark.django_db
def test_auto_heal_approves_small_rebalances_by_policy_only(gateway, reviewer, ops, settings, run_tasks):
    settings.AUTO_HEAL_MAX_DRIFT = 10
    put_wallets(gateway, {"small": (108, [100]), "big": (150, [100])})
    violations = list(reconcile(gateway).violations.order_by("uid"))
    flags.set_flag("auto_heal_enabled", True, actor=ops, reason="pilot")

    big, small = run_tasks(
        changes.propose_heals,
        violations,
        actor=reviewer,
        strategy="rebalance",
        reason="drift",
        gateway=gateway,
    )

    small.refresh_from_db()
    big.refresh_from_db()
    assert small.state == RequestState.APPLIED and wallet(gateway, "small")["points"] == 100
    approval = small.approvals.get()
    assert approval.approver is None and approval.policy == "policy:auto-heal"
    assert small.events.get(to_state="approved").actor_label == "policy:auto-heal"
    assert big.state == RequestState.PROPOSED and wallet(gateway, "big")["points"] == 150


@pytest.mark.django_db
def test_auto_heal_is_off_by_default(gateway, drifted, reviewer, run_tasks):
    [request] = run_tasks(
        changes.propose_heals, [drifted], actor=reviewer, strategy="rebalance", reason="x", gateway=gateway
    )
    assert request.state == RequestState.PROPOSED


@pytest.mark.django_db
def test_proposals_expire(gateway, drifted, reviewer, approver, settings):
    settings.PROPOSAL_TTL_HOURS = 24
    [request] = changes.propose_heals(
        [drifted], actor=reviewer, strategy="rebalance", reason="x", gateway=gateway
    )

    with time_machine.travel(timezone.now() + timedelta(hours=25)):
        with pytest.raises(changes.RequestRefused, match="expired"):
            changes.approve(request.pk, actor=approver, gateway=gateway)

    request.refresh_from_db()
    assert request.state == RequestState.EXPIRED
    assert request.events.last().actor_label == "system:expiry"


@pytest.mark.django_db
def test_the_sweeper_expires_undecided_proposals(gateway, reviewer, settings):
    settings.PROPOSAL_TTL_HOURS = 1
    put_wallets(gateway, {"a": (1, [1])})
    request = changes.propose_adjustment(
        actor=reviewer, uid="a", amount=5, reason_code="goodwill", reason="x", gateway=gateway
    )
    with time_machine.travel(timezone.now() + timedelta(hours=2)):
        assert request_states.expire_due() == 1
    request.refresh_from_db()
    assert request.state == RequestState.EXPIRED


# -- execution -------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_ledger_entry_landing_after_approval_makes_the_heal_stale(
    gateway, drifted, reviewer, approver, django_capture_on_commit_callbacks
):
    [request] = changes.propose_heals(
        [drifted], actor=reviewer, strategy="rebalance", reason="x", gateway=gateway
    )
    with django_capture_on_commit_callbacks() as queued:
        changes.approve(request.pk, actor=approver, gateway=gateway)
    # A purchase lands after the approval, before the worker runs.
    gateway.append_entry("w1", "late-purchase", {"amount": 7, "type": "purchase"})
    for callback in queued:
        callback()

    request.refresh_from_db()
    assert request.state == RequestState.STALE
    assert "wallet changed since approval" in request.events.last().reason
    assert wallet(gateway, "w1")["points"] == 137  # 130 + the purchase, not healed
    assert (
        not firestore_client(gateway.project)
        .collection("auditLog")
        .document(request.ledger_entry_id)
        .get()
        .exists
    )


@pytest.mark.django_db
def test_executing_twice_applies_once(gateway, reviewer, approver, django_capture_on_commit_callbacks):
    put_wallets(gateway, {"a": (50, [50])})
    request = changes.propose_adjustment(
        actor=reviewer,
        uid="a",
        amount=25,
        reason_code="service_recovery",
        reason="late delivery",
        gateway=gateway,
    )
    with django_capture_on_commit_callbacks():
        changes.approve(request.pk, actor=approver, gateway=gateway)

    execution.execute(request.pk, gateway=gateway)
    execution.execute(request.pk, gateway=gateway)

    request.refresh_from_db()
    assert request.state == RequestState.APPLIED
    assert wallet(gateway, "a")["points"] == 75
    assert entry(gateway, "a", request.ledger_entry_id)["amount"] == 25


@pytest.mark.django_db
def test_a_worker_dying_after_the_commit_is_recovered_without_applying_twice(
    gateway, reviewer, approver, django_capture_on_commit_callbacks
):
    put_wallets(gateway, {"a": (50, [50])})
    request = changes.propose_adjustment(
        actor=reviewer, uid="a", amount=-20, reason_code="fraud", reason="abuse", gateway=gateway
    )
    with django_capture_on_commit_callbacks():
        changes.approve(request.pk, actor=approver, gateway=gateway)
    # The first worker claimed it and committed to Firestore, then died.
    BalanceRequest.objects.filter(pk=request.pk).update(claimed_at=timezone.now() - timedelta(hours=2))
    gateway.apply_balance_change(execution.change_of(request))

    assert execution.release_abandoned(timedelta(hours=1)) == 1
    execution.execute(request.pk, gateway=gateway)

    request.refresh_from_db()
    assert request.state == RequestState.APPLIED
    assert request.result["already_applied"] is True
    assert wallet(gateway, "a")["points"] == 30  # moved once


@pytest.mark.django_db
def test_a_manual_adjustment_moves_ledger_and_wallet_together(gateway, reviewer, approver, run_tasks):
    put_wallets(gateway, {"a": (10, [10])})
    request = changes.propose_adjustment(
        actor=reviewer, uid="a", amount=15, reason_code="goodwill", reason="birthday", gateway=gateway
    )
    run_tasks(changes.approve, request.pk, actor=approver, gateway=gateway)

    posted = entry(gateway, "a", request.ledger_entry_id)
    assert (posted["type"], posted["amount"], posted["reasonCode"]) == ("adjustment", 15, "goodwill")
    assert wallet(gateway, "a")["points"] == 25
    assert reconcile(gateway).violations_count == 0


@pytest.mark.django_db
@pytest.mark.parametrize("amount", [0, 1.5, "10"])
def test_an_adjustment_amount_must_be_a_nonzero_integer(gateway, reviewer, amount):
    put_wallets(gateway, {"a": (10, [10])})
    with pytest.raises(changes.RequestRefused, match="non-zero whole number"):
        changes.propose_adjustment(
            actor=reviewer, uid="a", amount=amount, reason_code="goodwill", reason="x", gateway=gateway
        )


@pytest.mark.django_db
def test_an_adjustment_for_an_unknown_wallet_is_refused(gateway, reviewer):
    with pytest.raises(changes.RequestRefused, match="no wallet"):
        changes.propose_adjustment(
            actor=reviewer, uid="ghost", amount=5, reason_code="goodwill", reason="x", gateway=gateway
        )


# -- one negative-balance policy for reversals and adjustments ------------------------


def propose(gateway, reviewer, uid, amount):
    return changes.propose_adjustment(
        actor=reviewer, uid=uid, amount=amount, reason_code="correction", reason="x", gateway=gateway
    )


@pytest.mark.django_db
def test_an_adjustment_below_zero_is_refused_when_proposed_as_a_reversal_would_be(gateway, reviewer):
    put_wallets(gateway, {"a": (100, [100])})

    with pytest.raises(
        changes.RequestRefused, match="from 100 to \u2212900 points; negative balances are not"
    ):
        propose(gateway, reviewer, "a", -1000)

    assert not BalanceRequest.objects.exists()
    assert propose(gateway, reviewer, "a", -100).amount == -100  # down to zero is fine


@pytest.mark.django_db
def test_an_adjustment_below_zero_is_applied_when_negative_balances_are_allowed(
    gateway, reviewer, approver, run_tasks, settings
):
    settings.BACKFILL_ALLOW_NEGATIVE_BALANCE = True
    put_wallets(gateway, {"a": (100, [100])})

    request = propose(gateway, reviewer, "a", -1000)
    run_tasks(changes.approve, request.pk, actor=approver, gateway=gateway)

    request.refresh_from_db()
    assert request.state == RequestState.APPLIED
    assert wallet(gateway, "a")["points"] == -900


@pytest.mark.django_db
def test_an_adjustment_that_would_go_below_zero_by_approval_time_is_refused_then(
    gateway, reviewer, approver, run_tasks
):
    put_wallets(gateway, {"a": (1000, [1000])})
    request = propose(gateway, reviewer, "a", -500)
    gateway.append_entry("a", "spend-1", {"amount": -900, "type": "redemption"})  # the user spends

    with pytest.raises(changes.RequestRefused, match="from 100 to \u2212400 points"):
        run_tasks(changes.approve, request.pk, actor=approver, gateway=gateway)

    request.refresh_from_db()
    assert request.state == RequestState.PROPOSED and not request.approvals.exists()
    assert wallet(gateway, "a")["points"] == 100


@pytest.mark.django_db
def test_execution_refuses_an_adjustment_below_zero_under_the_policy_in_force_then(
    gateway, reviewer, approver, settings, django_capture_on_commit_callbacks
):
    settings.BACKFILL_ALLOW_NEGATIVE_BALANCE = True
    put_wallets(gateway, {"a": (100, [100])})
    request = propose(gateway, reviewer, "a", -1000)
    with django_capture_on_commit_callbacks():
        changes.approve(request.pk, actor=approver, gateway=gateway)
    settings.BACKFILL_ALLOW_NEGATIVE_BALANCE = False  # the policy changes before a worker runs it

    execution.execute(request.pk, gateway=gateway)

    request.refresh_from_db()
    assert request.state == RequestState.FAILED
    assert "from 100 to \u2212900 points; negative balances are not allowed" in request.events.last().reason
    assert wallet(gateway, "a")["points"] == 100
    assert entry(gateway, "a", request.ledger_entry_id) is None


@pytest.mark.django_db
@pytest.mark.parametrize("amount", [10_000_000_000_000_000_000, -(2**63), 2**63 - 1])
def test_an_adjustment_beyond_a_64_bit_balance_is_refused(gateway, reviewer, amount):
    put_wallets(gateway, {"a": (100, [100])})

    with pytest.raises(changes.RequestRefused, match="64-bit"):
        propose(gateway, reviewer, "a", amount)

    assert not BalanceRequest.objects.exists()


# -- the freeze ------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_freeze_refuses_each_change_and_names_who_and_why(gateway, drifted, reviewer, approver, ops):
    put_wallets(gateway, {"a": (10, [10])})
    [heal] = changes.propose_heals(
        [drifted], actor=reviewer, strategy="rebalance", reason="x", gateway=gateway
    )
    freeze.freeze(actor=ops, reason="cutover to the new points app", gateway=gateway)

    expected = "frozen since .* by olga: cutover to the new points app"
    with pytest.raises(freeze.Frozen, match=expected):
        changes.propose_adjustment(
            actor=reviewer, uid="a", amount=5, reason_code="goodwill", reason="x", gateway=gateway
        )
    with pytest.raises(freeze.Frozen, match=expected):
        changes.propose_heals([drifted], actor=reviewer, strategy="rebalance", reason="x", gateway=gateway)
    with pytest.raises(freeze.Frozen, match=expected):
        changes.approve(heal.pk, actor=approver, gateway=gateway)
    # Reconciliation keeps working.
    assert reconcile(gateway).status == "completed"
    assert gateway.get_config("adjustments")["frozen"] is True
    assert gateway.get_config("adjustments")["reason"] == "cutover to the new points app"


@pytest.mark.django_db
def test_an_approved_request_waits_out_the_freeze_then_runs(
    gateway, reviewer, approver, ops, django_capture_on_commit_callbacks
):
    put_wallets(gateway, {"a": (10, [10])})
    request = changes.propose_adjustment(
        actor=reviewer, uid="a", amount=5, reason_code="goodwill", reason="x", gateway=gateway
    )
    with django_capture_on_commit_callbacks() as queued:
        changes.approve(request.pk, actor=approver, gateway=gateway)
    freeze.freeze(actor=ops, reason="cutover", gateway=gateway)
    for callback in queued:
        callback()  # the worker gets to it during the freeze

    request.refresh_from_db()
    assert request.state == RequestState.APPROVED and request.claimed_at is None
    assert wallet(gateway, "a")["points"] == 10

    with django_capture_on_commit_callbacks(execute=True):
        freeze.unfreeze(actor=ops, reason="cutover done", gateway=gateway)

    request.refresh_from_db()
    assert request.state == RequestState.APPLIED
    assert wallet(gateway, "a")["points"] == 15
    assert gateway.get_config("adjustments")["frozen"] is False


@pytest.mark.django_db
def test_a_request_that_waited_runs_only_if_still_valid(
    gateway, reviewer, approver, ops, django_capture_on_commit_callbacks
):
    put_wallets(gateway, {"a": (10, [10])})
    request = changes.propose_adjustment(
        actor=reviewer, uid="a", amount=5, reason_code="goodwill", reason="x", gateway=gateway
    )
    freeze_reason = "cutover"
    with django_capture_on_commit_callbacks():
        changes.approve(request.pk, actor=approver, gateway=gateway)
    freeze.freeze(actor=ops, reason=freeze_reason, gateway=gateway)
    gateway.append_entry("a", "during-cutover", {"amount": 1, "type": "purchase"})
    with django_capture_on_commit_callbacks(execute=True):
        freeze.unfreeze(actor=ops, reason="done", gateway=gateway)

    request.refresh_from_db()
    assert request.state == RequestState.STALE
    assert wallet(gateway, "a")["points"] == 11


@pytest.mark.django_db
def test_freezing_needs_the_ops_role_and_a_reason(gateway, reviewer, ops):
    with pytest.raises(PermissionError):
        freeze.freeze(actor=reviewer, reason="x", gateway=gateway)
    with pytest.raises(ValueError, match="reason"):
        freeze.freeze(actor=ops, reason="", gateway=gateway)
    freeze.freeze(actor=ops, reason="x", gateway=gateway)
    with pytest.raises(ValueError, match="already frozen"):
        freeze.freeze(actor=ops, reason="again", gateway=gateway)


@pytest.mark.django_db
def test_freeze_and_unfreeze_commands(gateway, ops):
    call_command("freeze", "--reason", "cutover", "--actor", "olga")
    assert freeze.current().reason == "cutover"
    with pytest.raises(CommandError, match="say who"):
        call_command("unfreeze", "--reason", "done")
    call_command("unfreeze", "--reason", "done", "--actor", "olga")
    assert freeze.current() is None
    assert [e.frozen for e in freeze.FreezeEvent.objects.order_by("id")] == [True, False]


# -- concurrency (PostgreSQL) ---------------------------------------------------------


@pytest.mark.skipif(
    not connection.vendor == "postgresql",
    reason="needs DATABASE_URL on PostgreSQL (row locks across connections)",
)
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_concurrent_approvals_execute_once(firestore_project, approver2):
    gateway = get_gateway(firestore_project)
    reviewer = User.objects.create_user("rita", "rita@example.com", "password")
    reviewer.groups.add(Group.objects.get(name="finance-reviewer"))
    approver = User.objects.create_user("bert", "bert@example.com", "password")
    approver.groups.add(Group.objects.get(name=APPROVER))
    put_wallets(gateway, {"a": (10, [10])})
    request = changes.propose_adjustment(
        actor=reviewer, uid="a", amount=5, reason_code="goodwill", reason="x", gateway=gateway
    )
    barrier = threading.Barrier(2)
    outcomes = []

    def click(user):
        from django.db import connections

        barrier.wait()
        try:
            changes.approve(request.pk, actor=user, gateway=gateway)
            outcomes.append("approved")
        except changes.RequestRefused as exc:
            outcomes.append(str(exc))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=click, args=(user,)) for user in (approver, approver2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    request.refresh_from_db()
    assert sorted(outcomes)[0] == "approved" and "not awaiting a decision" in sorted(outcomes)[1]
    assert request.state == RequestState.APPLIED
    assert request.approvals.count() == 1
    assert wallet(gateway, "a")["points"] == 15


@pytest.mark.django_db
def test_the_sweep_task_expires_releases_and_resumes(
    gateway, reviewer, approver, settings, django_capture_on_commit_callbacks
):
    from reconciliation import tasks

    put_wallets(gateway, {"a": (10, [10]), "b": (1, [1])})
    stuck = changes.propose_adjustment(
        actor=reviewer, uid="a", amount=5, reason_code="goodwill", reason="x", gateway=gateway
    )
    with django_capture_on_commit_callbacks():
        changes.approve(stuck.pk, actor=approver, gateway=gateway)
    BalanceRequest.objects.filter(pk=stuck.pk).update(claimed_at=timezone.now() - timedelta(days=1))
    settings.PROPOSAL_TTL_HOURS = 1
    old = changes.propose_adjustment(
        actor=reviewer, uid="b", amount=5, reason_code="goodwill", reason="x", gateway=gateway
    )

    with time_machine.travel(timezone.now() + timedelta(hours=2)):
        with django_capture_on_commit_callbacks(execute=True):
            summary = tasks.sweep_requests()

    assert summary == {"expired": 1, "released": 1, "resumed": 1}
    stuck.refresh_from_db()
    old.refresh_from_db()
    assert (stuck.state, old.state) == (RequestState.APPLIED, RequestState.EXPIRED)
    assert wallet(gateway, "a")["points"] == 15
