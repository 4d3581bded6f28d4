"""A settlement row's page is where it is closed, one row at a time (issue 25):
the one action its kind of break takes, offered in place to whoever may take
it and said to be someone else's to whoever may not; each comes back to the
row's page with the list's filters kept."""

import io
from urllib.parse import quote

import pytest
from django.core.management import call_command
from django.urls import reverse

from backfill.models import DataMigration, MigrationKind
from reconciliation.models import BalanceRequest
from settlement.models import FollowUp, Outcome, SettlementRow, SettlementRun

FILTERS = "outcome=breaks"


@pytest.fixture
def run(world, write_statement, every_outcome):
    call_command("reconcile_settlement", str(write_statement(every_outcome)), stdout=io.StringIO())
    return SettlementRun.objects.get()


def row_of(run, outcome, **fields):
    return SettlementRow.objects.get(run=run, outcome=outcome, **fields)


def page_of(row):
    """The row's page as opened from the list filtered to its breaks."""
    url = reverse("admin:settlement_settlementrow_change", args=[row.pk])
    return f"{url}?_changelist_filters={quote(FILTERS)}"


def action_url(row, action):
    return reverse(f"admin:settlement_row_{action}", args=[row.pk]) + f"?_changelist_filters={quote(FILTERS)}"


def test_a_reviewer_is_told_who_replays_a_missing_payment_and_cannot(client, reviewer, run):
    missing = row_of(run, Outcome.MISSING_IN_LEDGER, replayable=True)
    client.force_login(reviewer)

    page = client.get(page_of(missing)).content.decode()

    assert "can be replayed" not in page
    assert (
        "<strong>Replay its stored delivery</strong>: not your role: ops replay a stored delivery "
        "(a dry run first)." in page
    )
    assert 'id="row-replay"' not in page
    assert client.post(action_url(missing, "replay")).status_code == 403
    assert not DataMigration.objects.exists()


def test_ops_plan_the_replay_of_one_row_from_its_page(client, ops, run, django_capture_on_commit_callbacks):
    missing = row_of(run, Outcome.MISSING_IN_LEDGER, replayable=True)
    client.force_login(ops)
    page = client.get(page_of(missing)).content.decode()
    assert 'id="row-replay"' in page
    assert f"A dry run of stored delivery {missing.delivery_id} plans what it credits" in page

    with django_capture_on_commit_callbacks(execute=True):
        done = client.post(action_url(missing, "replay"), follow=True)

    plan = DataMigration.objects.get()
    assert done.redirect_chain == [(page_of(missing), 302)]
    body = done.content.decode()
    assert f"Dry run {plan.pk} queued for line {missing.line}: read its plan on its page." in body
    migration_url = reverse("admin:backfill_datamigration_change", args=[plan.pk])
    assert f'<a href="{migration_url}">migration {plan.pk}</a>' in body  # its follow-up
    assert (plan.dry_run, plan.status, plan.applied) == (True, "completed", 1)
    assert 'id="row-replay"' not in body  # planned once: the plan is run from its page
    assert f"dry run {plan.pk} plans it already: read its plan, and run it for real from its page" in body


def test_a_row_with_no_stored_delivery_says_why_it_cannot_be_replayed(client, ops, run):
    nodel = row_of(run, Outcome.MISSING_IN_LEDGER, replayable=False)
    client.force_login(ops)

    page = client.get(page_of(nodel)).content.decode()

    assert "<strong>Replay its stored delivery</strong>: no stored delivery replay can apply" in page
    assert 'id="row-replay"' not in page


def test_ops_plan_the_reversal_of_one_unreversed_row(client, ops, run, django_capture_on_commit_callbacks):
    unreversed = row_of(run, Outcome.UNREVERSED)
    client.force_login(ops)

    with django_capture_on_commit_callbacks(execute=True):
        client.post(action_url(unreversed, "reverse"))

    plan = DataMigration.objects.get()
    assert (plan.kind, plan.dry_run, plan.applied) == (MigrationKind.REVERSAL_CSV, True, 1)
    assert FollowUp.objects.get(row=unreversed).migration == plan


def test_a_reviewer_proposes_the_adjustment_of_a_mismatch_seeing_what_it_moves(client, reviewer, run):
    mismatch = row_of(run, Outcome.POINTS_MISMATCH)
    client.force_login(reviewer)
    page = client.get(page_of(mismatch)).content.decode()
    assert "Wallet u1 moves by +10 points, with a ledger entry that settles purchase-pay_pts" in page

    refused = client.post(action_url(mismatch, "adjust"), {"adjust-reason": ""}, follow=True)
    assert "Refused: say why: a reason is required." in refused.content.decode()
    done = client.post(action_url(mismatch, "adjust"), {"adjust-reason": "statement of 25 Nov"}, follow=True)

    made = BalanceRequest.objects.get()
    assert (made.uid, made.amount, made.reason_code, made.state) == ("u1", 10, "settlement", "proposed")
    body = done.content.decode()
    assert f"Adjustment {made.pk} of +10 points for u1 proposed: a second person approves it." in body
    assert 'id="row-adjust"' not in body  # one adjustment settles a payment
    assert f"<strong>Propose a manual adjustment</strong>: run {run.pk} line {mismatch.line}:" in body


def test_an_approver_marks_one_row_explained_in_place(client, approver, reviewer, run):
    gone = row_of(run, Outcome.MISSING_AT_PROVIDER)
    client.force_login(reviewer)
    page = client.get(page_of(gone)).content.decode()
    assert "not your role: a finance approver marks a row explained" in page
    client.force_login(approver)

    done = client.post(action_url(gone, "explain"), {"explain-reason": "settled next week"}, follow=True)

    assert "Row marked explained." in done.content.decode()
    assert FollowUp.objects.get(row=gone).reason == "settled next week"
    assert "bob explained it already: settled next week" in done.content.decode()
