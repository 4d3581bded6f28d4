"""The settlement admin per role: pages, money at stake, filters, CSV export with
the formula guard, the upload a worker processes, and the actions that close
breaks through the existing rails (replay, reversal backfill, adjustments,
explanations)."""

import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.urls import reverse

from backfill import plan_approval, run_requests
from backfill.events import UTF8_BOM
from backfill.intake import store_delivery
from backfill.models import DataMigration, MigrationKind
from reconciliation.models import BalanceRequest
from settlement import services
from settlement.models import FollowUp, Outcome, SettlementRow, SettlementRun
from tests.helpers import csp_refusals, event_line


@pytest.fixture
def run(world, write_statement, every_outcome):
    call_command("reconcile_settlement", str(write_statement(every_outcome)), stdout=io.StringIO())
    return SettlementRun.objects.get()


def rows_of(run, outcome):
    return list(SettlementRow.objects.filter(run=run, outcome=outcome))


def act(client, action, rows, **extra):
    return client.post(
        reverse("admin:settlement_settlementrow_changelist") + f"?run={rows[0].run_id}",
        {"action": action, "_selected_action": [r.pk for r in rows], **extra},
        follow=True,
    )


def test_every_page_renders_for_a_reviewer_with_the_money_at_stake(client, reviewer, run):
    client.force_login(reviewer)
    page = client.get(reverse("admin:settlement_settlementrun_change", args=[run.pk]))
    assert page.status_code == 200 and not csp_refusals(page.content.decode())
    text = page.content.decode()
    assert 'id="stake-missing_in_ledger"' in text and "17.00 EUR" in text and "170" in text
    assert client.get(reverse("admin:settlement_settlementrun_changelist")).status_code == 200
    rows = client.get(reverse("admin:settlement_settlementrow_changelist") + f"?run={run.pk}&outcome=breaks")
    assert rows.status_code == 200
    assert len(rows.context["cl"].result_list) == 8  # every break, missing at the provider included
    one = rows_of(run, Outcome.USER_MISMATCH)[0]
    assert client.get(reverse("admin:settlement_settlementrow_change", args=[one.pk])).status_code == 200


def test_the_run_page_reads_as_finance_reads_money_breaks_first_with_a_total_per_currency(
    client, reviewer, world, write_statement, every_outcome
):
    rows = [dict(r) for r in every_outcome]
    by_payment = {(r["payment_id"], r["type"]): r for r in rows}
    by_payment[("pay_nodel", "payment")]["amount"] = "12469.4"  # missing in the ledger with pay_miss's 8.00
    by_payment[("pay_pts", "payment")].update(currency="USD", amount="24")  # the points mismatch
    call_command("reconcile_settlement", str(write_statement(rows)), stdout=io.StringIO())
    run = SettlementRun.objects.get()
    client.force_login(reviewer)
    page = client.get(reverse("admin:settlement_settlementrun_change", args=[run.pk]))
    html = page.content.decode()
    stake = html[html.index('id="at-stake"') :]
    missing = stake[stake.index('id="stake-missing_in_ledger"') :]
    assert "12,477.40 EUR" in missing[: missing.index("</tr>")]
    mismatch = stake[stake.index('id="stake-points_mismatch"') :]
    assert "24.00 USD" in mismatch[: mismatch.index("</tr>")]
    # Every break row's amount whatever its sign: 7 + 3 + 12,477.40 + 5 + 10 in EUR.
    total = stake[stake.index('id="stake-total"') :]
    total = total[: total.index("</tr>")]
    assert "Total at stake" in total and "12,502.40 EUR" in total and "24.00 USD" in total
    # Breaks first; the matched rows after the total, apart.
    assert stake.index('id="stake-missing_in_ledger"') < stake.index('id="stake-total"')
    assert stake.index('id="stake-total"') < stake.index('id="stake-matched"')
    assert "File size" in html and "file bytes" not in html.lower()
    row = SettlementRow.objects.get(run=run, payment_id="pay_nodel")
    row_page = client.get(reverse("admin:settlement_settlementrow_change", args=[row.pk])).content.decode()
    assert "12,469.40 EUR" in row_page and "12469.400000" not in row_page
    listing = client.get(reverse("admin:settlement_settlementrow_changelist") + f"?run={run.pk}")
    assert "12,469.40 EUR" in listing.content.decode()


def test_the_filters_per_outcome_show_only_that_outcome(client, approver, run):
    client.force_login(approver)
    for outcome, count in [("matched", 4), ("malformed", 3), ("unreversed", 1), ("missing_at_provider", 1)]:
        page = client.get(reverse("admin:settlement_settlementrow_changelist") + f"?outcome={outcome}")
        assert {r.outcome for r in page.context["cl"].result_list} == {outcome}
        assert page.context["cl"].result_count == count


def test_the_csv_export_holds_every_row_raw_with_text_guarded_against_formulas(
    client, reviewer, world, write_statement, settled
):
    header = "type,payment_id,reference,user_id,points,amount,currency,status,settled_at\n"
    path = write_statement(
        [], raw=f"{header}payment,pay_ok,,u1,100,10.50,EUR,settled,{settled}\n=HYPERLINK(1)\n"
    )
    call_command("reconcile_settlement", str(path), stdout=io.StringIO())
    run = SettlementRun.objects.get()
    client.force_login(reviewer)
    response = client.get(reverse("admin:settlement_run_export", args=[run.pk]))
    table = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert table[0][:3] == ["run_id", "line", "outcome"]
    assert table[1][2:9] == ["matched", "payment", "pay_ok", "", "u1", "100", "10.5"]
    assert table[2][2] == "malformed" and table[2][-1] == "'=HYPERLINK(1)"
    filtered = client.get(reverse("admin:settlement_rows_export") + f"?run={run.pk}&outcome=malformed")
    assert len(list(csv.reader(io.StringIO(b"".join(filtered.streaming_content).decode())))) == 2


def test_ops_cannot_export_and_an_outsider_sees_nothing(client, ops, outsider, run):
    client.force_login(ops)
    assert client.get(reverse("admin:settlement_run_export", args=[run.pk])).status_code == 403
    client.force_login(outsider)
    assert client.get(reverse("admin:settlement_settlementrun_changelist")).status_code == 403


def test_ops_upload_a_statement_and_a_worker_matches_it(
    client, ops, reviewer, world, write_statement, every_outcome, django_capture_on_commit_callbacks
):
    upload = SimpleUploadedFile("paynow-2026-11-25.csv", write_statement(every_outcome).read_bytes())
    client.force_login(reviewer)
    assert client.get(reverse("admin:settlement_upload")).status_code == 403
    client.force_login(ops)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("admin:settlement_upload"), {"statement": upload}, follow=True)
    run = SettlementRun.objects.get()
    assert response.redirect_chain[-1][0] == reverse("admin:settlement_settlementrun_change", args=[run.pk])
    assert run.status == "completed" and run.trigger == "admin" and run.requested_by == ops
    assert run.source == "paynow-2026-11-25.csv" and run.rows == 14 and run.expected_rows == 14
    page = client.get(reverse("admin:settlement_settlementrun_change", args=[run.pk]))
    assert "Done" in page.content.decode() and 'id="stake-matched"' in page.content.decode()


def test_an_upload_that_is_not_a_statement_is_refused_with_the_reason(client, ops, world):
    client.force_login(ops)
    bad = SimpleUploadedFile("export.jsonl", b'{"id": "evt_1"}\n')
    response = client.post(reverse("admin:settlement_upload"), {"statement": bad})
    assert "lacks the columns" in response.content.decode()
    assert not SettlementRun.objects.exists()


def test_replaying_the_missing_rows_then_rerunning_turns_them_into_matched(
    client, ops, approver, world, write_statement, every_outcome, django_capture_on_commit_callbacks
):
    path = write_statement(every_outcome)
    call_command("reconcile_settlement", str(path), stdout=io.StringIO())
    first = SettlementRun.objects.get()
    missing = rows_of(first, Outcome.MISSING_IN_LEDGER)
    client.force_login(ops)
    with django_capture_on_commit_callbacks(execute=True):
        page = act(client, "replay_missing", missing)
    assert "no stored delivery replay can apply" in page.content.decode()  # pay_nodel has none
    replayable = [r for r in missing if r.replayable]
    with django_capture_on_commit_callbacks(execute=True):
        act(client, "replay_missing", replayable)
    plan = DataMigration.objects.get()
    assert plan.dry_run and plan.status == "completed" and plan.applied == 1
    assert FollowUp.objects.get(row=replayable[0]).migration == plan
    plan_approval.approve_plan(plan.pk, actor=approver, reason="the missing payment, as the statement says")
    with django_capture_on_commit_callbacks(execute=True):
        real = run_requests.request_bound_run(plan.pk, actor=ops)
    real.refresh_from_db()
    assert real.status == "completed" and real.applied == 1

    call_command("reconcile_settlement", str(path), stdout=io.StringIO())
    second = SettlementRun.objects.exclude(pk=first.pk).get()
    assert second.repeat_of == first
    assert (second.missing_in_ledger, second.matched) == (first.missing_in_ledger - 1, first.matched + 1)
    assert SettlementRow.objects.get(run=second, payment_id="pay_miss").outcome == Outcome.MATCHED


def test_a_stored_delivery_that_began_with_a_byte_order_mark_is_replayed_like_any_other(
    client, ops, world, write_statement, settled, django_capture_on_commit_callbacks
):
    # The webhook accepts a body with a leading BOM (RFC 8259 allows it) and keeps it as it came.
    store_delivery(UTF8_BOM + event_line("evt_bom", payment="pay_bom", points=25).encode(), source="webhook")
    row = {"type": "payment", "payment_id": "pay_bom", "user_id": "u1", "points": 25, "amount": "2.50"}
    path = write_statement([{**row, "currency": "EUR", "status": "settled", "settled_at": settled}])
    call_command("reconcile_settlement", str(path), stdout=io.StringIO())
    missing = SettlementRow.objects.get(payment_id="pay_bom", outcome=Outcome.MISSING_IN_LEDGER)
    assert missing.replayable
    client.force_login(ops)

    with django_capture_on_commit_callbacks(execute=True):
        page = act(client, "replay_missing", [missing])

    assert page.status_code == 200
    plan = DataMigration.objects.get()
    assert f"Dry run migration {plan.pk} queued" in page.content.decode()
    assert plan.dry_run and plan.status == "completed" and plan.applied == 1


def test_unreversed_rows_go_to_a_reversal_backfill_dry_run(
    client, ops, reviewer, run, django_capture_on_commit_callbacks
):
    rows = rows_of(run, Outcome.UNREVERSED)
    client.force_login(reviewer)
    act(client, "propose_reversals", rows)
    assert not DataMigration.objects.exists()  # not a reviewer's action
    client.force_login(ops)
    with django_capture_on_commit_callbacks(execute=True):
        act(client, "propose_reversals", rows)
    plan = DataMigration.objects.get()
    assert plan.kind == MigrationKind.REVERSAL_CSV and plan.dry_run and plan.status == "completed"
    assert plan.applied == 1  # refund re_1 of 50 against pay_ref's 200


def test_mismatches_become_manual_adjustments_with_reason_code_settlement(
    client, reviewer, approver, run, world
):
    rows = rows_of(run, Outcome.POINTS_MISMATCH) + rows_of(run, Outcome.NOT_SETTLED)
    client.force_login(reviewer)
    form = act(client, "propose_adjustments", rows)
    assert "adjust wallet u1 by +10" in form.content.decode()
    assert "adjust wallet u2 by −30" in form.content.decode()
    act(client, "propose_adjustments", rows, apply="1", reason="statement of 2026-11-25")
    made = {r.uid: r for r in BalanceRequest.objects.all()}
    assert (made["u1"].amount, made["u2"].amount) == (10, -30)
    assert {r.reason_code for r in made.values()} == {"settlement"}
    assert {r.state for r in made.values()} == {"proposed"}  # maker-checker: an approver decides


def test_only_an_approver_marks_rows_explained_with_a_reason(client, reviewer, approver, run):
    rows = rows_of(run, Outcome.MISSING_AT_PROVIDER)
    client.force_login(reviewer)
    act(client, "explain", rows, apply="1", reason="settled in next week's statement")
    assert not FollowUp.objects.exists()
    client.force_login(approver)
    act(client, "explain", rows, apply="1", reason="")  # a reason is required
    assert not FollowUp.objects.exists()
    act(client, "explain", rows, apply="1", reason="settled in next week's statement")
    explained = FollowUp.objects.get()
    assert explained.kind == "explained" and explained.actor == approver and explained.row == rows[0]
    page = client.get(reverse("admin:settlement_settlementrow_changelist") + "?follow_up=explained")
    assert [r.pk for r in page.context["cl"].result_list] == [rows[0].pk]


def test_the_admin_index_lists_settlement_for_every_role(client, reviewer, approver, ops):
    for user in (reviewer, approver, ops):
        client.force_login(user)
        page = client.get(reverse("admin:index")).content.decode()
        assert reverse("admin:settlement_settlementrun_changelist") in page, user


def test_a_run_whose_file_is_gone_fails_visibly(
    client, ops, world, write_statement, django_capture_on_commit_callbacks
):
    path = write_statement([])
    with django_capture_on_commit_callbacks(execute=False) as queued:
        run = services.request_import(source="gone.csv", path=str(path), actor=ops, trigger="admin")
    path.unlink()
    for callback in queued:
        callback()
    run.refresh_from_db()
    assert run.status == "failed" and "FileNotFoundError" in run.error
    client.force_login(ops)
    page = client.get(reverse("admin:settlement_settlementrun_change", args=[run.pk])).content.decode()
    assert "FileNotFoundError" in page and "Failed" in page
