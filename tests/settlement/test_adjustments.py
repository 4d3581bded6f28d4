"""A settlement break closed by a manual adjustment is paid out once: one
standing adjustment per payment, whichever row, run or import it is proposed
from, and an applied one counts as credited when the statement is matched again."""

import io

import pytest
from django.core.management import call_command
from django.db import IntegrityError, transaction
from django.urls import reverse

from reconciliation import changes
from reconciliation.models import BalanceRequest, RequestState
from settlement import actions
from settlement.models import FollowUp, Outcome, SettlementRow, SettlementRun
from tests.helpers import firestore_client


def import_statement(path):
    call_command("reconcile_settlement", str(path), stdout=io.StringIO(), stderr=io.StringIO())
    return SettlementRun.objects.order_by("-pk").first()


def row_of(run, payment_id, outcome=None):
    row = SettlementRow.objects.get(run=run, payment_id=payment_id, type="payment", line__isnull=False)
    assert outcome is None or row.outcome == outcome, (row.outcome, row.detail)
    return row


def propose(client, rows, reason="statement of 2026-11-25"):
    return client.post(
        reverse("admin:settlement_settlementrow_changelist") + f"?run={rows[0].run_id}",
        {
            "action": "propose_adjustments",
            "_selected_action": [r.pk for r in rows],
            "apply": "1",
            "reason": reason,
        },
        follow=True,
    )


def messages_of(page):
    return [str(m) for m in page.context["messages"]]


def wallet_points(gateway, uid):
    return firestore_client(gateway.project).collection("wallets").document(uid).get().to_dict()["points"]


def test_a_points_mismatch_is_paid_once_across_rows_runs_and_reimports(
    client, reviewer, approver, world, write_statement, every_outcome, django_capture_on_commit_callbacks
):
    path = write_statement(every_outcome)
    first = import_statement(path)
    second = import_statement(path)  # the same file again
    client.force_login(reviewer)

    page = propose(client, [row_of(first, "pay_pts", Outcome.POINTS_MISMATCH)])
    assert any("1 manual adjustment(s) proposed" in m for m in messages_of(page))
    [made] = BalanceRequest.objects.all()
    assert (made.uid, made.amount, made.settles) == ("u1", 10, "purchase-pay_pts")

    # The same payment on the second import's row, then on the first row again: refused, said why.
    for row in (row_of(second, "pay_pts"), row_of(first, "pay_pts")):
        page = propose(client, [row])
        text = " ".join(messages_of(page))
        assert "Refused" in text and f"manual adjustment #{made.pk}" in text and "purchase-pay_pts" in text
    assert BalanceRequest.objects.count() == 1
    # The form says so before anyone types a reason.
    form = client.post(
        reverse("admin:settlement_settlementrow_changelist") + f"?run={second.pk}",
        {"action": "propose_adjustments", "_selected_action": [row_of(second, "pay_pts").pk]},
    )
    assert f"manual adjustment #{made.pk}" in form.content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        changes.approve(made.pk, actor=approver, gateway=world)
    made.refresh_from_db()
    assert made.state == RequestState.APPLIED and wallet_points(world, "u1") == 140
    assert firestore_client(world.project).document(f"wallets/u1/ledger/{made.ledger_entry_id}").get().get(
        "settles"
    ) == ("purchase-pay_pts")

    # Matched again, the break is closed: the adjustment counts toward what was credited.
    third = import_statement(path)
    closed = row_of(third, "pay_pts", Outcome.MATCHED)
    assert f"manual adjustment #{made.pk}" in closed.detail and "+10" in closed.detail
    assert (third.points_mismatch, third.matched) == (first.points_mismatch - 1, first.matched + 1)
    # ...and an applied adjustment refuses another, from any run's row.
    for row in (row_of(first, "pay_pts"), row_of(second, "pay_pts")):
        assert "Refused" in " ".join(messages_of(propose(client, [row])))
    assert BalanceRequest.objects.count() == 1 and wallet_points(world, "u1") == 140


def test_credited_not_settled_is_taken_back_once_and_then_agrees(
    client, reviewer, approver, world, write_statement, every_outcome, django_capture_on_commit_callbacks
):
    path = write_statement(every_outcome)
    first = import_statement(path)
    client.force_login(reviewer)
    propose(client, [row_of(first, "pay_ns", Outcome.NOT_SETTLED)])
    [made] = BalanceRequest.objects.all()
    assert (made.uid, made.amount, made.settles) == ("u2", -30, "purchase-pay_ns")

    # Pending: a new import still shows the break, says an adjustment is in hand, offers no other.
    second = import_statement(path)
    pending = row_of(second, "pay_ns", Outcome.NOT_SETTLED)
    assert f"manual adjustment #{made.pk}" in pending.detail and "proposed" in pending.detail
    with pytest.raises(actions.ActionRefused, match=f"manual adjustment #{made.pk}"):
        actions.propose_adjustments([pending], actor=reviewer, reason="again", gateway=world)

    with django_capture_on_commit_callbacks(execute=True):
        changes.approve(made.pk, actor=approver, gateway=world)
    third = import_statement(path)
    agreed = row_of(third, "pay_ns", Outcome.MATCHED)
    assert "they agree" in agreed.detail and third.not_settled == 0
    assert BalanceRequest.objects.count() == 1


def test_two_rows_of_one_payment_in_one_action_are_refused(reviewer, world, write_statement, every_outcome):
    path = write_statement(every_outcome)
    first, second = import_statement(path), import_statement(path)
    rows = [row_of(first, "pay_pts"), row_of(second, "pay_pts")]
    with pytest.raises(actions.ActionRefused, match="select one row per payment"):
        actions.propose_adjustments(rows, actor=reviewer, reason="twice", gateway=world)
    assert not BalanceRequest.objects.exists() and not FollowUp.objects.exists()


def test_the_service_refuses_a_second_standing_adjustment_for_one_identity(reviewer, approver, world):
    first = changes.propose_adjustment(
        actor=reviewer,
        uid="u1",
        amount=10,
        reason_code="settlement",
        reason="pay_pts settled for 60",
        gateway=world,
        settles="purchase-pay_pts",
    )
    with pytest.raises(changes.RequestRefused, match=f"already has manual adjustment #{first.pk}"):
        changes.propose_adjustment(
            actor=reviewer,
            uid="u1",
            amount=10,
            reason_code="settlement",
            reason="again",
            gateway=world,
            settles="purchase-pay_pts",
        )
    # Once the first is rejected the payment may be adjusted again; other adjustments are never blocked.
    changes.reject(first.pk, actor=approver, reason="wrong amount")
    again = changes.propose_adjustment(
        actor=reviewer,
        uid="u1",
        amount=10,
        reason_code="settlement",
        reason="right amount",
        gateway=world,
        settles="purchase-pay_pts",
    )
    plain = changes.propose_adjustment(
        actor=reviewer, uid="u1", amount=5, reason_code="goodwill", reason="sorry", gateway=world
    )
    assert again.state == plain.state == RequestState.PROPOSED and plain.settles == ""


def test_the_database_holds_one_standing_adjustment_per_identity_whatever_code_writes(reviewer, world):
    first = changes.propose_adjustment(
        actor=reviewer,
        uid="u1",
        amount=10,
        reason_code="settlement",
        reason="pay_pts settled for 60",
        gateway=world,
        settles="purchase-pay_pts",
    )
    twin = {
        "kind": first.kind,
        "uid": "u1",
        "amount": 10,
        "reason_code": "settlement",
        "reason": "written around the service",
        "settles": "purchase-pay_pts",
        "expected_points": first.expected_points,
        "expected_ledger_sum": first.expected_ledger_sum,
        "proposed_by": reviewer,
        "expires_at": first.expires_at,
    }
    with pytest.raises(IntegrityError), transaction.atomic():
        BalanceRequest.objects.create(**twin)
    # A request that no longer stands (rejected, stale, failed, expired) does not count.
    BalanceRequest.objects.create(**{**twin, "state": RequestState.REJECTED})
    assert BalanceRequest.objects.filter(settles="purchase-pay_pts").count() == 2
