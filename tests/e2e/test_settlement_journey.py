"""Journey: a settlement statement read and closed row by row (issue 25). A
reviewer reads the run's money at stake, opens the points mismatch and proposes
its adjustment on the row's page, seeing what it moves; on the missing payment
she is told ops replay it, not that it "can be replayed". Ops find that row in
their inbox and plan its replay from its page; an approver marks the row no
delivery explains as explained, in place."""

import csv
import json
import re
from datetime import UTC, datetime

import pytest
from playwright.sync_api import expect

from settlement.statement import COLUMNS

WALLET = "cust-settle-0008"
# The ledger credited pay_set_mismatch with 100 points (the statement says 120); the
# delivery of pay_set_missing is stored, never applied (Firestore failed then);
# pay_set_nodel was never delivered at all.
SETUP = """
import json
from backfill.models import ProviderEventDelivery
from backfill.intake import store_delivery
from backfill.services import apply_delivery
from revassure.firestore import get_gateway

WALLET = "cust-settle-0008"

def stored(event_id, payment, points):
    data = {"payment_id": payment, "user_id": WALLET, "points": points}
    body = {"id": event_id, "type": "payment.succeeded", "created": "2026-11-24T10:00:00Z", "data": data}
    return store_delivery(json.dumps(body).encode(), source="webhook")

gateway = get_gateway()
gateway.write_wallets([(WALLET, 0, {})])
apply_delivery(stored("evt_set_1", "pay_set_mismatch", 100).pk, gateway=gateway)
missing = stored("evt_set_2", "pay_set_missing", 80)
ProviderEventDelivery.objects.filter(pk=missing.pk).update(status="failed", reason="Firestore unavailable")
"""
ADJUSTED_BECAUSE = "PayNow settled 120 points for this payment; the ledger credited 100."
EXPLAINED_BECAUSE = "A test payment PayNow settled by mistake; they refund it next week."


@pytest.fixture(scope="module")
def run_id(site, tmp_path_factory):
    site.manage("shell", "-c", SETUP)
    path = tmp_path_factory.mktemp("settlement") / "paynow-2026-11-25.csv"
    settled = datetime(2026, 11, 25, 9, 0, tzinfo=UTC).isoformat()
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
        for payment, points, amount in [
            ("pay_set_mismatch", 120, "12.00"),
            ("pay_set_missing", 80, "8.00"),
            ("pay_set_nodel", 45, "4.50"),
        ]:
            writer.writerow(["payment", payment, "", WALLET, points, amount, "EUR", "settled", settled])
    return json.loads(site.manage("reconcile_settlement", str(path), "--json"))["run_id"]


def row_link(page, payment):
    return page.locator("#result_list tbody tr").filter(has_text=payment).locator("th a, td a").first


def test_settlement_rows_are_read_and_closed_one_by_one_by_each_role(people, run_id):
    # The reviewer reads the run: money at stake first, each outcome a link to its rows.
    reviewer = people.sign_in("rita")
    reviewer.goto(f"/admin/settlement/settlementrun/{run_id}/change/")
    expect(reviewer.locator("#stake-total")).to_contain_text("24.50 EUR")
    people.fits_the_screen(reviewer)
    reviewer.locator("#stake-points_mismatch").get_by_role("link").first.click()
    row_link(reviewer, "pay_set_mismatch").click()

    # The mismatch's page: what the adjustment moves, proposed in place.
    page_url = reviewer.url
    assert "_changelist_filters=" in page_url
    work = reviewer.locator("#row-adjust")
    expect(work).to_contain_text(f"Wallet {WALLET} moves by +20 points")
    people.fits_the_screen(reviewer)
    work.get_by_label("Reason").fill(ADJUSTED_BECAUSE)
    work.get_by_role("button", name="Propose a manual adjustment").click()
    proposed = reviewer.get_by_text(re.compile(rf"Adjustment \d+ of \+20 points for {WALLET} proposed"))
    expect(proposed).to_be_visible()
    assert reviewer.url == page_url
    expect(reviewer.locator("#row-follow-ups")).to_contain_text("rita: manual adjustment → request")
    expect(reviewer.locator("#row-adjust")).to_have_count(0)  # one adjustment settles a payment

    # The missing payment: not hers to replay, and the page does not say it "can be replayed".
    reviewer.goto(f"/admin/settlement/settlementrow/?run={run_id}&outcome=missing_in_ledger")
    row_link(reviewer, "pay_set_missing").click()
    expect(reviewer.locator("#content")).not_to_contain_text("can be replayed")
    expect(reviewer.locator("#row-refused")).to_contain_text(
        "Replay its stored delivery: not your role: ops replay a stored delivery (a dry run first)."
    )
    expect(reviewer.locator("#row-replay")).to_have_count(0)

    # Ops: the row waits in their inbox; they plan its replay from its page.
    ops = people.sign_in("otto")
    ops.locator("#inbox-link").click()
    waiting = ops.locator("#inbox-settlement-rows tbody tr").filter(
        has_text=f"Settlement run {run_id}: 1 row(s) missing in the ledger"
    )
    waiting.get_by_role("link", name="Explain or follow up").click()
    row_link(ops, "pay_set_missing").click()
    replay = ops.locator("#row-replay")
    expect(replay).to_contain_text("A dry run of stored delivery")
    people.fits_the_screen(ops)
    replay.get_by_role("button", name="Replay its stored delivery").click()
    queued = ops.get_by_text(re.compile(r"Dry run \d+ queued for line 3: read its plan on its page\."))
    expect(queued).to_be_visible()
    plan_id = re.search(r"Dry run (\d+)", queued.inner_text()).group(1)
    expect(ops.locator("#row-replay")).to_have_count(0)  # planned once; the plan is run from its page
    expect(ops.locator("#row-refused")).to_contain_text(f"dry run {plan_id} plans it already")
    ops.locator("#row-follow-ups").get_by_role("link", name=f"migration {plan_id}").click()
    expect(ops.locator("#migration-status")).to_have_text("Completed", timeout=60_000)
    expect(ops.locator("#migration-items-table tbody tr").filter(has_text="evt_set_2")).to_contain_text(
        "Would apply"
    )

    # The approver explains the row no delivery can close, in place.
    approver = people.sign_in("abe")
    approver.goto(f"/admin/settlement/settlementrow/?run={run_id}&outcome=missing_in_ledger")
    row_link(approver, "pay_set_nodel").click()
    explain = approver.locator("#row-explain")
    explain.get_by_label("Reason").fill(EXPLAINED_BECAUSE)
    explain.get_by_role("button", name="Mark it explained").click()
    expect(approver.get_by_text("Row marked explained.")).to_be_visible()
    expect(approver.locator("#row-refused")).to_contain_text(f"abe explained it already: {EXPLAINED_BECAUSE}")
    people.fits_the_screen(approver)
    people.screenshot(approver)
