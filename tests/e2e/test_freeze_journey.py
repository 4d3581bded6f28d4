"""Journey 2: ops freeze manual balance changes from the admin index, everyone
sees it, nobody types an adjustment for nothing; after the unfreeze an
adjustment goes through once approved."""

import re

from playwright.sync_api import expect

WALLET = "cust-adjust-0003"  # 2,500 points, in balance
FROZEN_BECAUSE = "Cutover to points v2: no manual changes until the checks are green."


def test_ops_freeze_from_the_index_and_adjustments_wait_for_the_unfreeze(people):
    ops = people.sign_in("otto")
    panel = ops.get_by_role("region", name="Freeze of manual balance changes")
    expect(panel).to_contain_text("Not frozen")
    people.fits_the_screen(ops)
    panel.get_by_label("Reason").fill(FROZEN_BECAUSE)
    panel.get_by_role("button", name="Freeze manual changes").click()
    banner = ops.get_by_role("alert").filter(has_text="FROZEN")
    expect(banner).to_contain_text(f"by otto: {FROZEN_BECAUSE}")

    reviewer = people.sign_in("rita")
    expect(reviewer.get_by_role("alert").filter(has_text="FROZEN")).to_contain_text(FROZEN_BECAUSE)
    reviewer.get_by_role("link", name="Violations").first.click()
    expect(reviewer.get_by_role("alert").filter(has_text="FROZEN")).to_be_visible()
    reviewer.get_by_role("link", name="revassure", exact=True).click()
    reviewer.get_by_role("link", name="Balance requests", exact=True).click()
    reviewer.get_by_role("link", name="Propose manual adjustment").click()
    # Said before anything is typed: no form to fill in for nothing.
    people.fits_the_screen(reviewer)
    expect(reviewer.locator("#content-main").get_by_role("alert")).to_contain_text(
        f"by otto: {FROZEN_BECAUSE}"
    )
    expect(reviewer.get_by_label("Amount")).to_have_count(0)

    ops.get_by_role("link", name="revassure", exact=True).click()
    panel.get_by_label("Reason").fill("Cutover done, reconciliation on the new project is clean.")
    panel.get_by_role("button", name="Unfreeze manual changes").click()
    expect(panel).to_contain_text("Not frozen")
    expect(ops.get_by_role("alert").filter(has_text="FROZEN")).to_have_count(0)

    reviewer.reload()
    expect(reviewer.get_by_role("alert").filter(has_text="FROZEN")).to_have_count(0)
    reviewer.get_by_label("Wallet uid").fill(WALLET)
    reviewer.get_by_label("Amount").fill("150")
    reviewer.get_by_label("Reason code").select_option(label="goodwill gesture")
    reviewer.get_by_label(re.compile(r"^Reason:?$")).fill("Goodwill for a delivery that arrived a week late.")
    reviewer.get_by_role("button", name="Propose").click()
    expect(
        reviewer.get_by_text(re.compile(rf"Adjustment \d+ of \+150 points for {WALLET} proposed"))
    ).to_be_visible()

    approver = people.sign_in("abe")
    approver.get_by_role("link", name="Balance requests", exact=True).click()
    approver.get_by_role("row").filter(has_text=WALLET).get_by_role("link", name="Decide").click()
    approver.get_by_label("Reason").fill("Goodwill within the monthly budget.")
    approver.get_by_role("button", name="Approve").click()
    expect(approver.get_by_text(re.compile(r"Request \d+ approved"))).to_be_visible()

    # The worker applies it: the wallet page shows the new balance and the entry.
    lookup = approver.get_by_role("search", name="Wallet lookup")
    lookup.get_by_role("searchbox").fill(WALLET)
    lookup.get_by_role("button", name="Go").click()
    people.reload_until(approver, approver.locator("#wallet-balance"), "2,650")
    newest = approver.locator("#wallet-ledger tbody tr").first
    expect(newest).to_contain_text("+150")
    expect(newest).to_contain_text("Manual adjustment")
    expect(approver.locator("#wallet-drift")).to_have_text("In balance")
    people.screenshot(approver)
